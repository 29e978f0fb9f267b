"""Fault injection (issue #22's acceptance): `cdmetrics sync`, the real CLI in a subprocess, syncs
a small sandbox organisation (GitLab, Jenkins, Harbor and OCI registries, a Kubernetes cluster)
through bounded fault-injecting proxies (tests/fault_proxy.py: 429 with Retry-After in seconds and
as an HTTP date, 5xx storms, dropped connections, truncated bodies, malformed JSON with 200, short
GitLab pages, stalls longer than the read timeout), killed with SIGKILL at a seeded random request
in some runs; then ONE clean resume (the same sync without faults). The warehouse must then equal
an uninterrupted sync through the same proxies without faults, table by table, derived tables
included, on SQLite and on PostgreSQL.

Compared: every table but the bookkeeping of how it was filled (alembic_version, sync_state,
derive_state), rows by their natural keys, foreign keys replaced by the natural key of the row
they reference (`tests.sandbox_helpers.by_natural_keys`). Ignored columns: surrogate ids (they
depend on the order rows arrived in), and the columns the schema marks `volatile`, `kept` or
`changed`: raw_payload.fetched_at and .payload (the verbatim body; its sha256 `hash` is
compared), changed_at of commits, parent links, merge requests, MR commits, images and image tags
(when this warehouse saw the row change), image_tag.last_seen_at, branch.first_seen_at and
policy_violation's first_seen_at/last_seen_at (when this warehouse first or last saw the row); of
drift_snapshot only the latest snapshot, without taken_at and drift_age_s (the hour of the
derive's wall clock, and ages measured then). The faulty run's rejected raw payloads named
"malformed <url>" (bodies the proxy cut, kept as evidence) are asserted kept and counted, then
left out.

The proxies sit at the same addresses in every run, so URLs stored from payloads are the same.
Each scenario prints its seed; `FAULT_SEED=n` runs the scenarios with that seed instead (the
schedule is seeded, the order threads send requests in is not, so a seed replays roughly).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from sandbox.generate import generate
from sandbox.serve import Sandbox
from tests.conftest import pg_schema, schema_url
from tests.fault_proxy import KINDS, FaultProxy
from tests.sandbox_helpers import by_natural_keys, differences
from warehouse.engine import make_engine
from warehouse.schema import Repo, Source

CLI = str(Path(sys.executable).parent / "cdmetrics")
TOKEN = "fault-token"
ENV_NAMES = ("FI_GITLAB", "FI_JENKINS_USER", "FI_JENKINS_TOKEN", "FI_REGISTRY_USER", "FI_TOKEN")
# (backend, seed, SIGKILL at a random request): two scenarios per backend
SCENARIOS = [
    ("sqlite", 11, False),
    ("sqlite", 14, True),
    ("postgresql", 21, False),
    ("postgresql", 22, True),
]
# timeouts lowered so that stalls and Retry-After cost little: a stall (1.5 s) outlasts the
# read timeout (1 s); a 429's Retry-After (1 s) is cut to 0.2 s; a killed worker's leases expire
# after 2 s
KILLED_RUN_FAULTS = 8  # a proxy's faults in a run to be killed (30 otherwise)
# the faults that fail a stream by design (a 200 answer is not retried); retries absorb the others
UNRETRIED = re.compile(r"malformed JSON in a 200 answer|short page")
SYNC = 'timeout_s = 1.0\nmax_retry_after_s = 0.2\nlease = "2s"\n'


@dataclass
class Stack:
    """The sandbox behind its proxies, a config syncing it through them, and the references."""

    sandbox: Sandbox
    proxies: list[FaultProxy]
    folder: Path
    environ: dict[str, str]
    references: dict[str, tuple[list[int], dict[str, list[tuple[Any, ...]]]]] = field(
        default_factory=dict
    )

    def inject(self, seed: int | None, per_run: int | None = None) -> None:
        for i, proxy in enumerate(self.proxies):
            proxy.inject(None if seed is None else seed * 100 + i, per_run)

    def fired(self) -> Counter[str]:
        return sum((p.fired for p in self.proxies), Counter())

    def offered(self) -> set[str]:
        """The kinds some faulted request could have had ("short" only a GitLab REST list page,
        which GraphQL leaves few of: the seeded draws may land on none)."""
        return set().union(*(p.offered for p in self.proxies))

    def requests(self) -> list[int]:
        return [p.requests for p in self.proxies]

    def sync(
        self, url: str, kill_at: tuple[int, int] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`cdmetrics sync` into `url`; killed with SIGKILL when proxy `kill_at[0]` has seen
        `kill_at[1]` requests."""
        process = subprocess.Popen(
            [CLI, "-w", url, "sync"],
            cwd=self.folder,
            env={**os.environ, **self.environ},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if kill_at is not None:

            def kill(_: int) -> None:
                if self.proxies[kill_at[0]].requests >= kill_at[1] and process.poll() is None:
                    process.send_signal(signal.SIGKILL)

            for proxy in self.proxies:
                proxy.on_request = kill
        try:
            out, err = process.communicate(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for proxy in self.proxies:
                proxy.on_request = None
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("faults")
    # the smallest size with both GitLab-built and Jenkins-built services (tiny has one service)
    org = generate(1, "small")
    with Sandbox.start(org=org, token=TOKEN, kubernetes=True) as sandbox, ExitStack() as stop:
        rewrites: dict[str, str] = {}
        upstreams = [sandbox.gitlab_url, sandbox.jenkins_url, sandbox.harbor_url, sandbox.oci_url]
        proxies = [FaultProxy(u, rewrites) for u in [*upstreams, sandbox.kubernetes_url]]
        for proxy in proxies:
            stop.callback(proxy.close)
        kubeconfig = sandbox.write_kubeconfig(folder / "kubeconfig")
        config = sandbox.config(*ENV_NAMES) + sandbox.kubernetes_config(kubeconfig)
        for upstream, proxy_url in rewrites.items():
            config = config.replace(upstream, proxy_url)
            kubeconfig.write_text(kubeconfig.read_text().replace(upstream, proxy_url))
        (folder / "cdmetrics.toml").write_text(config.replace("[sync]\n", f"[sync]\n{SYNC}", 1))
        secrets = (TOKEN, sandbox.jenkins_user, TOKEN, sandbox.registry_user, TOKEN)
        yield Stack(sandbox, proxies, folder, dict(zip(ENV_NAMES, secrets, strict=True)))


def warehouse_url(backend: str, folder: Path, stop: ExitStack) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'warehouse.db'}"
    _, schema = stop.enter_context(pg_schema())
    return schema_url(schema)


def contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = make_engine(url)
    try:
        return by_natural_keys(engine)
    finally:
        engine.dispose()


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON summary a finished `cdmetrics sync` prints last."""
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def reference(stack: Stack, backend: str, tmp: Path) -> tuple[list[int], dict[str, list[tuple]]]:
    """(requests per proxy, contents) of an uninterrupted sync without faults, once per
    backend."""
    if backend not in stack.references:
        folder = tmp / "reference"
        folder.mkdir()
        with ExitStack() as stop:
            url = warehouse_url(backend, folder, stop)
            stack.inject(None)
            result = stack.sync(url)
            assert result.returncode == 0, result.stderr[-3000:]
            stack.references[backend] = (stack.requests(), contents(url))
    return stack.references[backend]


@pytest.mark.parametrize(("backend", "seed", "kill"), SCENARIOS)
def test_a_faulty_sync_ends_after_one_clean_resume_equal_to_an_uninterrupted_one(
    stack: Stack, backend: str, seed: int, kill: bool, tmp_path: Path
) -> None:
    seed = int(os.environ.get("FAULT_SEED", seed))
    requests, expected = reference(stack, backend, tmp_path)
    assert all(expected[t] for t in ("commit", "job", "deployment", "observed_workload", "image"))
    assert expected["deployment_change"] and expected["deployment_chain"]
    kill_at = kill_point(random.Random(seed), requests) if kill else None
    print(f"fault seed {seed} on {backend}; SIGKILL at (proxy, request) {kill_at} of {requests}")
    with ExitStack() as stop:
        url = warehouse_url(backend, tmp_path, stop)
        stack.inject(seed, KILLED_RUN_FAULTS if kill else None)
        faulty = stack.sync(url, kill_at)
        fired = stack.fired()
        print(f"faults injected: {dict(fired)}; exit {faulty.returncode}")
        rejected = 0
        if kill:
            assert faulty.returncode == -signal.SIGKILL, f"ended before the kill: {faulty.stderr}"
        else:
            ran = summary(faulty)
            assert not ran["derive"].get("skipped")
            # every kind of fault a faulted request could have had fired at least once
            assert set(fired) == stack.offered() >= set(KINDS) - {"short"}, fired
            rejected = sum(source["rejected"] for source in ran["sources"].values())
            errors = [e for source in ran["sources"].values() for e in source["errors"]]
            assert errors, "the malformed bodies and short pages failed no stream"
            assert not [e for e in errors if not UNRETRIED.search(e)]
        stack.inject(None)
        resumed = stack.sync(url)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert all(s["ok"] for s in summary(resumed)["sources"].values())
        found = contents(url)
    # a malformed body is kept as a rejected raw payload named "malformed <url>" (none when the
    # kill came first): evidence of what came, which a clean sync never has
    kept = [r for r in found["raw_payload"] if any(str(v).startswith("malformed ") for v in r)]
    assert all(True in r for r in kept), kept  # flagged rejected
    if not kill:  # each kept and counted as rejected (one URL may come malformed twice)
        assert 0 < len(kept) <= rejected <= fired["malformed"], (len(kept), rejected, fired)
    found["raw_payload"] = [r for r in found["raw_payload"] if r not in kept]
    assert found.keys() == expected.keys()
    differing = [differences(t, found[t], rows) for t, rows in expected.items() if found[t] != rows]
    assert not differing, "\n".join(differing)


def kill_point(rng: random.Random, requests: list[int]) -> tuple[int, int]:
    """(proxy, request count) to kill at: a proxy of the seed's choice, so that kills land in
    every source's phase (GitLab, Jenkins, the registries, the cluster), early enough in it (a
    twentieth to half of its reference requests) that a faulty run, whose malformed bodies and
    short pages end streams early, still gets there."""
    proxy = rng.choice([i for i, n in enumerate(requests) if n >= 10])
    return proxy, rng.randint(max(1, requests[proxy] // 20), requests[proxy] // 2)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_project_list_cut_short_is_made_whole_by_one_clean_resume(
    stack: Stack, backend: str, tmp_path: Path
) -> None:
    """GitLab's project list one project short: under keyset pagination the last page promises
    no count, so the sync cannot tell, and goes on without that project (as when the bot is given
    access to a project later). Jenkins, which runs after GitLab, registers a repo of its own for
    that project's builds; one clean resume must fold it into GitLab's (builds, deployments,
    derived chains, released merge requests), leaving what an uninterrupted sync leaves."""
    _, expected = reference(stack, backend, tmp_path)
    with ExitStack() as stop:
        url = warehouse_url(backend, tmp_path, stop)
        stack.inject(None)
        stack.proxies[0].force("/projects?", "short")
        assert stack.sync(url).returncode == 0 and stack.fired() == {"short": 1}
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                jenkins_repos = conn.execute(
                    select(func.count())
                    .select_from(Repo)
                    .join(Source, Source.id == Repo.source_id)
                    .where(Source.kind == "jenkins")
                ).scalar_one()
        finally:
            engine.dispose()
        assert jenkins_repos  # the shape happened
        resumed = stack.sync(url)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        found = contents(url)
    differing = [differences(t, found[t], rows) for t, rows in expected.items() if found[t] != rows]
    assert not differing, "\n".join(differing)
