"""Start the sandbox: generate an organisation and serve it through the API simulators."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.generate import generate
from sandbox.gitlab_api import GitLabSimulator
from sandbox.jenkins_api import JenkinsSimulator
from sandbox.jenkins_org import gitlab_view
from sandbox.jira_api import JiraSimulator
from sandbox.kubernetes_api import KubernetesSimulator
from sandbox.model import Organisation
from sandbox.pagerduty_api import PagerDutySimulator
from sandbox.pagerduty_api import from_trackers as pagerduty_data
from sandbox.registry_api import HarborSimulator, OCISimulator
from sandbox.registry_payloads import HOST as REGISTRY_HOST
from sandbox.server import Faults, RateLimit, SimulatorApp, SimulatorServer
from sandbox.sonarqube_api import SonarQubeSimulator
from sandbox.sonarqube_org import SonarOrg, build_sonar
from sandbox.svn_jenkins import SERVICE as SVN_SERVICE
from sandbox.svn_jenkins import jenkins_organisation
from sandbox.svn_repo import PASSWORD as SVN_PASSWORD
from sandbox.svn_repo import USER as SVN_USER
from sandbox.svn_repo import SvnRepository, start_repository
from sandbox.zentao_api import INCIDENT_SEVERITY, ZentaoSimulator
from sandbox.zentao_api import from_trackers as zentao_data

SVN_BEFORE = timedelta(days=6)  # the Subversion history starts this long before the org's `now`


@dataclass
class Sandbox:
    """A running sandbox: the organisation, its simulators and their servers.

    GitLab serves every service's code, registry and incidents, and the pipelines and deployments
    of the GitLab-built ones; Jenkins (user `jenkins_user`, API token `token`) builds and deploys
    the Jenkins-built ones.
    """

    org: Organisation
    gitlab: GitLabSimulator
    gitlab_app: SimulatorApp
    gitlab_server: SimulatorServer
    token: str
    jenkins: JenkinsSimulator | None = None
    jenkins_app: SimulatorApp | None = None
    jenkins_server: SimulatorServer | None = None
    jenkins_user: str = "sandbox"
    kubernetes: KubernetesSimulator | None = None
    kubernetes_app: SimulatorApp | None = None
    kubernetes_server: SimulatorServer | None = None
    # the registry (`registry=True`): Harbor v2.0 and an OCI distribution API over the same images,
    # user `registry_user` with the sandbox's token as password; images are pulled by REGISTRY_HOST
    harbor: HarborSimulator | None = None
    harbor_app: SimulatorApp | None = None
    harbor_server: SimulatorServer | None = None
    oci: OCISimulator | None = None
    oci_app: SimulatorApp | None = None
    oci_server: SimulatorServer | None = None
    registry_user: str = "robot$cdmetrics"
    # SonarQube (`sonarqube=True`): analyses of the organisation's builds (sandbox.sonarqube_org),
    # the sandbox's token as the user token
    sonar: SonarOrg | None = None
    sonarqube: SonarQubeSimulator | None = None
    sonarqube_app: SimulatorApp | None = None
    sonarqube_server: SimulatorServer | None = None
    # the trackers (`trackers=True` or `start_trackers`): Zentao (account and password in
    # `zentao.data`) and PagerDuty (API key: the sandbox's token)
    zentao: ZentaoSimulator | None = None
    zentao_app: SimulatorApp | None = None
    zentao_server: SimulatorServer | None = None
    zentao_modules: dict[str, int] | None = None  # service -> Zentao module id
    pagerduty: PagerDutySimulator | None = None
    pagerduty_app: SimulatorApp | None = None
    pagerduty_server: SimulatorServer | None = None
    # Jira (`jira=True`): the Jira teams' projects, as Cloud (`jira_flavour`) or Server/DC; Cloud
    # logs in with `jira_user` and the sandbox's token, Server/DC with the token as a bearer
    jira: JiraSimulator | None = None
    jira_app: SimulatorApp | None = None
    jira_server: SimulatorServer | None = None
    jira_user: str = "sandbox@acme.test"
    # the Subversion repository (`svn=True`): svnserve with its user and password, built by Jenkins
    svn_repo: SvnRepository | None = None

    @classmethod
    def start(
        cls,
        size: str = "small",
        seed: int = 1,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "sandbox-token",
        org: Organisation | None = None,
        at: datetime | None = None,
        rate_limit: RateLimit | None = None,
        keep_log: bool = False,
        jenkins: bool = True,
        jenkins_port: int = 0,
        kubernetes: bool = False,
        kubernetes_port: int = 0,
        jenkins_user: str = "sandbox",
        registry: bool = True,
        registry_auth: str = "token",
        sonarqube: bool = False,
        sonarqube_version: str = "10",
        trackers: bool = False,
        jira: bool = True,
        jira_flavour: str = "cloud",
        svn: bool = False,
    ) -> Sandbox:
        """Generate (unless `org` is given) and serve; stop it with `stop()` or a `with` block.

        `jenkins=False` serves GitLab alone (the Jenkins-built services then have no builds).
        `svn=True` also builds and serves a Subversion repository (sandbox/svn_repo.py, its
        history ending six days before the organisation's `now`), whose service Jenkins builds and
        deploys (sandbox/svn_jenkins.py); it needs Debian's subversion.
        """
        org = org or generate(seed, size)
        repo = None
        if svn:
            repo = start_repository(
                Path(tempfile.mkdtemp(prefix="cdmetrics-svn-")), start=org.now - SVN_BEFORE
            )
            org = dataclasses.replace(
                org, jenkins=[*org.jenkins, *jenkins_organisation(repo, org.now).jenkins]
            )
        gitlab = GitLabSimulator(gitlab_view(org), token=token, at=at)
        app = SimulatorApp(
            gitlab.router,
            auth=gitlab.authorised,
            rate_limit=rate_limit,
            faults=Faults(),
            keep_log=keep_log,
        )
        server = SimulatorServer(app, host=host, port=port)
        server.start()
        sandbox = cls(org, gitlab, app, server, token, jenkins_user=jenkins_user, svn_repo=repo)
        starts: list[tuple[bool, Callable[[], None]]] = [
            (jenkins, lambda: sandbox._start_jenkins(host, jenkins_port, at, keep_log)),
            (registry, lambda: sandbox._start_registry(host, at, keep_log, registry_auth)),
            (kubernetes, lambda: sandbox.start_kubernetes(host, kubernetes_port, at, keep_log)),
            (sonarqube, lambda: sandbox.start_sonarqube(host, at, keep_log, sonarqube_version)),
            (jira, lambda: sandbox.start_jira(host, at, keep_log, jira_flavour)),
            (trackers, lambda: sandbox.start_trackers(host, at, keep_log)),
        ]
        for wanted, start in starts:
            if wanted:
                try:
                    start()
                except Exception:  # whatever started is stopped, then the error goes on
                    sandbox.stop()
                    raise
        return sandbox

    def start_sonarqube(
        self,
        host: str = "127.0.0.1",
        at: datetime | None = None,
        keep_log: bool = False,
        version: str = "10",
    ) -> None:
        """Serve the organisation's SonarQube analyses (`version` "10" or "9.9" auth)."""
        self.sonar = build_sonar(self.org)
        self.sonarqube = SonarQubeSimulator(self.sonar, self.token, at=at, version=version)
        self.sonarqube_app = SimulatorApp(
            self.sonarqube.router,
            auth=self.sonarqube.authorised,
            faults=Faults(),
            keep_log=keep_log,
        )
        self.sonarqube_server = SimulatorServer(self.sonarqube_app, host=host)
        self.sonarqube_server.start()

    @property
    def sonarqube_url(self) -> str:
        """The SonarQube simulator's URL ("" when it is not running)."""
        return self.sonarqube_server.url if self.sonarqube_server else ""

    def sonarqube_source(self, token_env: str = "SANDBOX_SONAR_TOKEN") -> dict[str, Any]:
        """The `[[sources.sonarqube]]` entry of the running simulator (the legacy project mapped)."""
        assert self.sonar is not None and self.sonarqube is not None
        return {
            "name": "sonarqube",
            "url": self.sonarqube_url,
            "token_env": token_env,
            "version": self.sonarqube.version,
            "repositories": dict(self.sonar.repositories),
        }

    def start_trackers(
        self, host: str = "127.0.0.1", at: datetime | None = None, keep_log: bool = False
    ) -> None:
        """Serve the organisation's trackers (`sandbox.trackers`): the Zentao teams' products
        through the Zentao simulator, the paged incidents through the PagerDuty simulator."""
        data, self.zentao_modules = zentao_data(self.org)
        self.zentao = ZentaoSimulator(data, at=at or self.org.now)
        self.zentao_app = SimulatorApp(self.zentao.router, faults=Faults(), keep_log=keep_log)
        self.zentao_server = SimulatorServer(self.zentao_app, host=host)
        self.zentao_server.start()
        self.pagerduty = PagerDutySimulator(
            pagerduty_data(self.org), self.token, at=at or self.org.now
        )
        self.pagerduty_app = SimulatorApp(
            self.pagerduty.router,
            auth=self.pagerduty.authorised,
            faults=Faults(),
            keep_log=keep_log,
        )
        self.pagerduty_server = SimulatorServer(self.pagerduty_app, host=host)
        self.pagerduty_server.start()

    def tracker_sources(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The running tracker simulators as `[sources]` settings, with the environment variables
        their secrets are read from (Zentao's account and password, PagerDuty's API key)."""
        if self.zentao is None or self.pagerduty is None or self.zentao_server is None:
            return {}, {}
        assert self.pagerduty_server is not None and self.zentao_modules is not None
        products = {team: name for name, team in self.zentao.data.products.values()}
        teams = {s.name: s.team for s in self.org.services}
        environ = {
            "SANDBOX_ZENTAO_ACCOUNT": self.zentao.data.account,
            "SANDBOX_ZENTAO_PASSWORD": self.zentao.data.password,
            "SANDBOX_PAGERDUTY_TOKEN": self.token,
        }
        sources: dict[str, Any] = {
            "zentao": [
                {
                    "name": "zentao",
                    "url": self.zentao_server.url,
                    "account_env": "SANDBOX_ZENTAO_ACCOUNT",
                    "password_env": "SANDBOX_ZENTAO_PASSWORD",
                    "incident_severity": INCIDENT_SEVERITY,
                    "services": [
                        {
                            "product": products[f"team-{teams[service]}"],
                            "module": str(module),
                            "service": service,
                        }
                        for service, module in sorted(self.zentao_modules.items())
                    ],
                }
            ],
            "pagerduty": [
                {
                    "name": "pagerduty",
                    "url": self.pagerduty_server.url,
                    "token_env": "SANDBOX_PAGERDUTY_TOKEN",
                    "services": dict(sorted(self.pagerduty.data.services.items())),
                }
            ],
        }
        return sources, environ

    def start_jira(
        self,
        host: str = "127.0.0.1",
        at: datetime | None = None,
        keep_log: bool = False,
        flavour: str = "cloud",
    ) -> None:
        """Serve the Jira simulator (Cloud or Server/DC); a running one is stopped first."""
        if self.jira_server is not None:
            self.jira_server.stop()
        self.jira = JiraSimulator(
            self.org,
            self.jira_user,
            self.token,
            flavour=flavour,
            at=at,
            gitlab_url=self.gitlab_url,
        )
        self.jira_app = SimulatorApp(
            self.jira.router, auth=self.jira.authorised, faults=Faults(), keep_log=keep_log
        )
        self.jira_server = SimulatorServer(self.jira_app, host=host)
        self.jira_server.start()

    @property
    def jira_url(self) -> str:
        """The Jira simulator's URL ("" when it is not running)."""
        return self.jira_server.url if self.jira_server else ""

    def jira_source(self, token_env: str, user_env: str = "") -> dict[str, Any]:
        """`[[sources.jira]]` settings for the Jira simulator: every Jira team's project, each
        service mapped by its component (issues filed without one stay unmapped)."""
        assert self.jira is not None
        projects = sorted(
            {p for tracker, p in self.org.trackers.projects.values() if tracker == "jira"}
        )
        rules = [
            {"service": service, "project": project, "component": service}
            for team in self.org.teams
            for tracker, project in [self.org.trackers.projects[team.name]]
            if tracker == "jira"
            for service in team.services
        ]
        return {
            "name": "jira",
            "url": self.jira_url,
            "flavour": self.jira.flavour,
            "user_env": user_env if self.jira.flavour == "cloud" else "",
            "token_env": token_env,
            "projects": projects,
            "timezone": str(self.jira.zone),
            "services": rules,
        }

    def start_kubernetes(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        at: datetime | None = None,
        keep_log: bool = False,
    ) -> None:
        """Serve the organisation's cluster (bearer token: the sandbox's token)."""
        self.kubernetes = KubernetesSimulator(self.org, self.token, at=at)
        self.kubernetes_app = SimulatorApp(
            self.kubernetes.router, faults=Faults(), keep_log=keep_log
        )
        self.kubernetes_server = SimulatorServer(self.kubernetes_app, host=host, port=port)
        self.kubernetes_server.start()

    @property
    def kubernetes_url(self) -> str:
        """The Kubernetes simulator's URL ("" when it is not running)."""
        return self.kubernetes_server.url if self.kubernetes_server else ""

    def write_kubeconfig(self, path: str | Path, context: str = "sandbox") -> Path:
        """Write a kubeconfig for the Kubernetes simulator (context `context`, the sandbox's token)."""
        path = Path(path)
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: sandbox\n  cluster:\n    server: {self.kubernetes_url}\n"
            f"contexts:\n- name: {context}\n  context:\n    cluster: sandbox\n    user: cdmetrics\n"
            f"current-context: {context}\n"
            f"users:\n- name: cdmetrics\n  user:\n    token: {self.token}\n"
        )
        path.chmod(0o600)
        return path

    def kubernetes_config(self, kubeconfig: str | Path, context: str = "sandbox") -> str:
        """A cdmetrics.toml fragment observing the sandbox cluster through `kubeconfig`."""
        from sandbox.kubernetes_org import ENVIRONMENTS, namespace_of

        lines = [
            f'"{namespace_of(t.name, env)}" = "{env}"'
            for t in self.org.teams
            for env in ENVIRONMENTS
        ]
        return (
            f'\n[[sources.kubernetes]]\nname = "kubernetes"\ncluster = "sandbox"\n'
            f'kubeconfig = "{kubeconfig}"\ncontext = "{context}"\n'
            "[sources.kubernetes.namespaces]\n" + "\n".join(lines) + "\n"
        )

    def _start_registry(self, host: str, at: datetime | None, keep_log: bool, auth: str) -> None:
        self.harbor = HarborSimulator(self.org, self.registry_user, self.token, at=at)
        self.harbor_app = SimulatorApp(self.harbor.router, faults=Faults(), keep_log=keep_log)
        self.harbor_server = SimulatorServer(self.harbor_app, host=host)
        self.harbor_server.start()
        self.oci = OCISimulator(self.org, self.registry_user, self.token, at=at, auth=auth)
        self.oci_app = SimulatorApp(self.oci.router, faults=Faults(), keep_log=keep_log)
        self.oci_server = SimulatorServer(self.oci_app, host=host)
        self.oci_server.start()

    @property
    def harbor_url(self) -> str:
        """The Harbor simulator's URL ("" when it is not running)."""
        return self.harbor_server.url if self.harbor_server else ""

    @property
    def oci_url(self) -> str:
        """The OCI distribution simulator's URL ("" when it is not running)."""
        return self.oci_server.url if self.oci_server else ""

    def _start_jenkins(self, host: str, port: int, at: datetime | None, keep_log: bool) -> None:
        self.jenkins = JenkinsSimulator(
            self.org, self.jenkins_user, self.token, at=at, gitlab_url=self.gitlab_url
        )
        self.jenkins_app = SimulatorApp(
            self.jenkins.router, auth=self.jenkins.authorised, faults=Faults(), keep_log=keep_log
        )
        self.jenkins_server = SimulatorServer(self.jenkins_app, host=host, port=port)
        self.jenkins_server.start()

    @property
    def gitlab_url(self) -> str:
        return self.gitlab_server.url

    @property
    def jenkins_url(self) -> str:
        """The Jenkins simulator's URL ("" when it is not running)."""
        return self.jenkins_server.url if self.jenkins_server else ""

    def advance(self, at: datetime) -> None:
        """Show every simulator's world as it is at `at`."""
        self.gitlab.advance(at)
        if self.jenkins is not None:
            self.jenkins.advance(at)
        if self.kubernetes is not None:
            self.kubernetes.advance(at)
        for registry in (self.harbor, self.oci):
            if registry is not None:
                registry.advance(at)
        if self.sonarqube is not None:
            self.sonarqube.advance(at)
        for tracker in (self.zentao, self.pagerduty):
            if tracker is not None:
                tracker.advance(at)
        if self.jira is not None:
            self.jira.advance(at)

    def history_days(self) -> int:
        """A `[sync] history_days` that reaches the organisation's first commit from today: a
        generated history may end long before today (tests fix their `now`)."""
        first = min(
            (c.committed_at for s in self.org.services for c in s.commits.values()),
            default=self.org.start,
        )
        return max(1, (datetime.now(UTC) - first).days + 2)

    def config(
        self,
        token_env: str = "SANDBOX_GITLAB_TOKEN",
        jenkins_user_env: str | None = None,
        jenkins_token_env: str | None = None,
        registry_user_env: str | None = None,
        registry_token_env: str | None = None,
    ) -> str:
        """A cdmetrics.toml fragment that syncs this sandbox: GitLab, and Jenkins when the names
        of the variables holding its user and API token (the sandbox's token) are given."""
        text = (
            f"[sync]\nrequests_per_second = 0\nhistory_days = {self.history_days()}\n\n"
            f'[[sources.gitlab]]\nname = "gitlab"\nurl = "{self.gitlab_url}"\n'
            f'token_env = "{token_env}"\ngroups = ["{self.org.root_group}"]\n'
        )
        if self.jenkins_server and jenkins_user_env and jenkins_token_env:
            text += (
                f'\n[[sources.jenkins]]\nname = "jenkins"\nurl = "{self.jenkins_url}"\n'
                f'user_env = "{jenkins_user_env}"\ntoken_env = "{jenkins_token_env}"\n'
            )
        if self.harbor_server and registry_user_env and registry_token_env:
            for kind, url in (("harbor", self.harbor_url), ("oci", self.oci_url)):
                text += (
                    f'\n[[sources.registry]]\nname = "{kind}"\nkind = "{kind}"\nurl = "{url}"\n'
                    f'host = "{REGISTRY_HOST}"\nprojects = ["{self.org.root_group}"]\n'
                    f'user_env = "{registry_user_env}"\ntoken_env = "{registry_token_env}"\n'
                )
        return text

    def sources(
        self, kubeconfig: str | Path | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Every running simulator as `[sources]` settings (`config.settings.Sources` shape),
        with the environment variables their secrets are read from: GitLab, Jenkins, the Harbor
        registry (the OCI one serves the same images) and, given a kubeconfig path, the cluster
        (written there)."""
        environ = {"SANDBOX_GITLAB_TOKEN": self.token}
        sources: dict[str, Any] = {
            "gitlab": [
                {
                    "name": "gitlab",
                    "url": self.gitlab_url,
                    "token_env": "SANDBOX_GITLAB_TOKEN",
                    "groups": [self.org.root_group],
                }
            ]
        }
        if self.jenkins_server is not None:
            environ |= {
                "SANDBOX_JENKINS_USER": self.jenkins_user,
                "SANDBOX_JENKINS_TOKEN": self.token,
            }
            sources["jenkins"] = [
                {
                    "name": "jenkins",
                    "url": self.jenkins_url,
                    "user_env": "SANDBOX_JENKINS_USER",
                    "token_env": "SANDBOX_JENKINS_TOKEN",
                }
            ]
        if self.harbor_server is not None:
            environ |= {
                "SANDBOX_REGISTRY_USER": self.registry_user,
                "SANDBOX_REGISTRY_TOKEN": self.token,
            }
            sources["registry"] = [
                {
                    "name": "harbor",
                    "kind": "harbor",
                    "url": self.harbor_url,
                    "host": REGISTRY_HOST,
                    "projects": [self.org.root_group],
                    "user_env": "SANDBOX_REGISTRY_USER",
                    "token_env": "SANDBOX_REGISTRY_TOKEN",
                }
            ]
        if self.sonarqube_server is not None:
            environ["SANDBOX_SONAR_TOKEN"] = self.token
            sources["sonarqube"] = [self.sonarqube_source()]
        if self.jira_server is not None:
            environ |= {"SANDBOX_JIRA_USER": self.jira_user, "SANDBOX_JIRA_TOKEN": self.token}
            sources["jira"] = [self.jira_source("SANDBOX_JIRA_TOKEN", "SANDBOX_JIRA_USER")]
        trackers, tracker_environ = self.tracker_sources()  # Zentao and PagerDuty, when served
        sources |= trackers
        environ |= tracker_environ
        if self.svn_repo is not None:
            environ |= {"SANDBOX_SVN_USER": SVN_USER, "SANDBOX_SVN_PASSWORD": SVN_PASSWORD}
            sources["svn"] = [
                {
                    "name": "svn",
                    "url": self.svn_repo.url,
                    "username_env": "SANDBOX_SVN_USER",
                    "password_env": "SANDBOX_SVN_PASSWORD",
                    "service": SVN_SERVICE,
                }
            ]
        if self.kubernetes_server is not None and kubeconfig is not None:
            from sandbox.kubernetes_org import ENVIRONMENTS, namespace_of

            sources["kubernetes"] = [
                {
                    "name": "kubernetes",
                    "cluster": "sandbox",
                    "kubeconfig": str(self.write_kubeconfig(kubeconfig)),
                    "context": "sandbox",
                    "namespaces": {
                        namespace_of(t.name, env): env
                        for t in self.org.teams
                        for env in ENVIRONMENTS
                    },
                }
            ]
        return sources, environ

    def describe(self) -> str:
        """What is being served and how to sync it."""
        o = self.org
        jenkins_built = sum(1 for s in o.services if s.builder == "jenkins")
        text = (
            f"sandbox {o.size} (seed {o.seed}): {len(o.teams)} teams, {len(o.services)} services "
            f"({jenkins_built} built by Jenkins), history {o.start:%Y-%m-%d} to {o.now:%Y-%m-%d}\n"
            f"GitLab API simulator: {self.gitlab_url}/api/v4 (token: {self.token})\n"
        )
        exports = f"export SANDBOX_GITLAB_TOKEN={self.token}\n"
        if self.jenkins_server:
            text += (
                f"Jenkins JSON API simulator: {self.jenkins_url}/api/json "
                f"(user: {self.jenkins_user}, API token: {self.token})\n"
            )
            exports += (
                f"export SANDBOX_JENKINS_USER={self.jenkins_user}\n"
                f"export SANDBOX_JENKINS_TOKEN={self.token}\n"
            )
        if self.harbor_server:
            text += (
                f"Harbor v2.0 API simulator: {self.harbor_url}/api/v2.0 and OCI registry "
                f"simulator: {self.oci_url}/v2/ (user: {self.registry_user}, password: "
                f"{self.token}; images pulled as {REGISTRY_HOST}/...)\n"
            )
            exports += (
                f"export SANDBOX_REGISTRY_USER='{self.registry_user}'\n"
                f"export SANDBOX_REGISTRY_TOKEN={self.token}\n"
            )
        if self.sonarqube_server and self.sonar is not None:
            text += (
                f"SonarQube API simulator: {self.sonarqube_url}/api (token: {self.token}; "
                f"projects keyed by repository path, {len(self.sonar.repositories)} mapped)\n"
            )
            exports += f"export SANDBOX_SONAR_TOKEN={self.token}\n"
        if self.jira_server and self.jira:
            text += (
                f"Jira {self.jira.flavour} API simulator: {self.jira_url}/rest/api/"
                f"{'3' if self.jira.flavour == 'cloud' else '2'} (user: {self.jira_user}, API "
                f"token: {self.token})\n"
            )
        trackers, tracker_environ = self.tracker_sources()
        if trackers:
            text += (
                f"Zentao REST API simulator: {trackers['zentao'][0]['url']}/api.php/v1 (account: "
                f"{tracker_environ['SANDBOX_ZENTAO_ACCOUNT']}, password: "
                f"{tracker_environ['SANDBOX_ZENTAO_PASSWORD']})\n"
                f"PagerDuty REST API simulator: {trackers['pagerduty'][0]['url']} (API key: "
                f"{self.token})\n"
            )
            exports += "".join(f"export {k}={v}\n" for k, v in tracker_environ.items())
        if self.svn_repo is not None:
            text += (
                f"Subversion repository (svnserve): {self.svn_repo.url} (user: {SVN_USER}, "
                f"password: {SVN_PASSWORD}; service {SVN_SERVICE}, built and deployed by Jenkins)\n"
            )
            exports += (
                f"export SANDBOX_SVN_USER={SVN_USER}\nexport SANDBOX_SVN_PASSWORD={SVN_PASSWORD}\n"
            )
        if self.kubernetes_server:
            text += (
                f"Kubernetes API simulator: {self.kubernetes_url} (cluster sandbox, bearer token: "
                f"{self.token}; namespaces <team>-<environment>)\n"
            )
        config = self.config(
            "SANDBOX_GITLAB_TOKEN",
            "SANDBOX_JENKINS_USER",
            "SANDBOX_JENKINS_TOKEN",
            "SANDBOX_REGISTRY_USER",
            "SANDBOX_REGISTRY_TOKEN",
        )
        if self.sonarqube_server and self.sonar is not None:
            config += (
                f'\n[[sources.sonarqube]]\nname = "sonarqube"\nurl = "{self.sonarqube_url}"\n'
                'token_env = "SANDBOX_SONAR_TOKEN"\n[sources.sonarqube.repositories]\n'
                + "".join(f'"{k}" = "{v}"\n' for k, v in self.sonar.repositories.items())
            )
        if self.svn_repo is not None:
            config += (
                f'\n[[sources.svn]]\nname = "svn"\nurl = "{self.svn_repo.url}"\n'
                f'username_env = "SANDBOX_SVN_USER"\npassword_env = "SANDBOX_SVN_PASSWORD"\n'
                f'service = "{SVN_SERVICE}"\n'
            )
        if self.jira_server:
            exports += f"export SANDBOX_JIRA_USER={self.jira_user}\nexport SANDBOX_JIRA_TOKEN={self.token}\n"
            config += self.jira_config("SANDBOX_JIRA_TOKEN", "SANDBOX_JIRA_USER")
        for kind, found in trackers.items():
            config += source_config(kind, found[0])
        return f"{text}\n{exports}# cdmetrics.toml\n{config}"

    def jira_config(self, token_env: str, user_env: str = "") -> str:
        """A cdmetrics.toml fragment of `jira_source`: the source and its service rules."""
        return source_config("jira", self.jira_source(token_env, user_env))

    def stop(self) -> None:
        self.gitlab_server.stop()
        if self.jenkins_server:
            self.jenkins_server.stop()
        if self.kubernetes_server:
            self.kubernetes_server.stop()
        for server in (
            self.harbor_server,
            self.oci_server,
            self.sonarqube_server,
            self.jira_server,
            self.zentao_server,
            self.pagerduty_server,
        ):
            if server is not None:
                server.stop()
        if self.svn_repo is not None:
            self.svn_repo.stop()
            shutil.rmtree(self.svn_repo.path.parent, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def source_config(kind: str, source: dict[str, Any]) -> str:
    """A cdmetrics.toml fragment of one `[[sources.<kind>]]`: its keys, then its service rules
    (a list: `[[sources.<kind>.services]]` tables; a mapping: one `[sources.<kind>.services]`)."""
    fields = dict(source)
    rules = fields.pop("services", None)
    text = f"\n[[sources.{kind}]]\n" + "".join(
        f"{key} = {json.dumps(value, ensure_ascii=False)}\n" for key, value in fields.items()
    )
    if isinstance(rules, dict):
        text += f"[sources.{kind}.services]\n" + "".join(
            f"{json.dumps(key, ensure_ascii=False)} = {json.dumps(value, ensure_ascii=False)}\n"
            for key, value in rules.items()
        )
    for rule in rules if isinstance(rules, list) else []:
        text += f"[[sources.{kind}.services]]\n" + "".join(
            f"{key} = {json.dumps(value, ensure_ascii=False)}\n" for key, value in rule.items()
        )
    return text
