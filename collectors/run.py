"""Run the collectors of every configured source (or those named), with progress bars on a terminal."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from cdmetrics.settings import Settings
from collectors.git import GitCollector
from collectors.gitlab import GitLabCollector
from collectors.jenkins import JenkinsCollector
from collectors.kubernetes import KubernetesCollector
from collectors.registry import RegistryCollector
from collectors.sync import SourceSummary


def run_sync(
    settings: Settings,
    engine: Engine,
    names: Sequence[str] | None = None,
    *,
    full: bool = False,
    console: Console | None = None,
) -> list[SourceSummary]:
    """Sync the GitLab, Jenkins and git sources (the others as their collectors land); one
    summary each. Jenkins runs after GitLab, so its builds find the repos GitLab registered."""
    wanted = set(names or [])
    console = console or Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=False,
    )
    summaries = []
    with progress:
        for source in settings.sources.gitlab:
            if wanted and source.name not in wanted:
                continue
            summaries.append(
                GitLabCollector(source, settings, engine, progress=progress, full=full).sync()
            )
        for jenkins_source in settings.sources.jenkins:
            if wanted and jenkins_source.name not in wanted:
                continue
            summaries.append(
                JenkinsCollector(
                    jenkins_source, settings, engine, progress=progress, full=full
                ).sync()
            )
        for git_source in settings.sources.git:
            if wanted and git_source.name not in wanted:
                continue
            summaries.append(
                GitCollector(git_source, settings, engine, progress=progress, full=full).sync()
            )
        for k8s_source in settings.sources.kubernetes:  # after the sources that name services
            if wanted and k8s_source.name not in wanted:
                continue
            summaries.append(
                KubernetesCollector(k8s_source, settings, engine, progress=progress).sync()
            )
        # registries after the code sources: label trust compares with the services' repositories
        for registry_source in settings.sources.registry:
            if wanted and registry_source.name not in wanted:
                continue
            summaries.append(
                RegistryCollector(
                    registry_source, settings, engine, progress=progress, full=full
                ).sync()
            )
    return summaries
