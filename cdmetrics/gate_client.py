"""`cdmetrics gate` as a thin client of the running service: when a service URL is known
(`--service-url`, `CDMETRICS_SERVICE__URL` or `[service] url`; `--warehouse` reads the warehouse
instead), the gate asks `POST <url>/api/v1/gate` rather than importing SQLAlchemy, pydantic and the
policies to read the warehouse itself. Standard library only (urllib, json, tomllib): a pipeline
step's process is the interpreter's start, these imports and one HTTP round trip
(docs/POLICIES.md, the gate's process time).

The contract is the gate's (docs/POLICIES.md): the service's decision is printed as the direct gate
prints it (cdmetrics.gate_output) with its exit code, 0 allow, 1 deny, 2 cannot decide; every
failure to get a decision (unreachable, timed out, refused credentials, no gate at that URL, an
answer that is no decision) is "cannot decide", the output still written, `--fail-open` turning
exactly those into 0.

The write token comes only from the environment variable named by `--token-env`,
`CDMETRICS_SERVICE__WRITE_TOKEN_ENV` or `[service] write_token_env` (default
`CDMETRICS_WRITE_TOKEN`, the service's own default); it is sent in the Authorization header and
never printed, logged or put in a URL. Redirects are not followed (they would carry the header
elsewhere): a redirect is "cannot decide", naming where it points.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple, NoReturn  # not dataclasses: 7 ms of imports
from urllib.parse import urlsplit

from cdmetrics import gate_output
from cdmetrics.cli_args import hoist_global_options, subcommand

SERVICE_URL_VARIABLE = "CDMETRICS_SERVICE__URL"
TOKEN_ENV_VARIABLE = "CDMETRICS_SERVICE__WRITE_TOKEN_ENV"
DEFAULT_TOKEN_ENV = "CDMETRICS_WRITE_TOKEN"  # config.settings.ServiceSettings.write_token_env
CONFIG_VARIABLE = "CDMETRICS_CONFIG"
DEFAULT_CONFIG = Path("cdmetrics.toml")
DEFAULT_TIMEOUT_S = 30.0
GATE_PATH = "/api/v1/gate"
FAIL_OPEN_NOTE = "gate cannot decide; allowing because of --fail-open (exit 0)"


class CannotAsk(Exception):
    """No decision from the service (or no way to ask it): exit 2, the message on stderr."""


class Remote(NamedTuple):
    """Where and how to ask: the service's base URL, the seconds to wait for the answer, and what
    names the variable holding the write token (`--token-env`, else the config; read when asking,
    so a config that cannot be read is the gate's "cannot decide")."""

    url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    token_env: str | None = None  # --token-env
    config: Path | None = None  # --config

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + GATE_PATH


def remote(
    service_url: str | None, token_env: str | None, timeout_s: float, config: Path | None
) -> Remote | None:
    """The service to ask when a URL is known (configured_url); None: the gate reads the
    warehouse (also when a config that might name a URL cannot be read: the settings then name
    the problem)."""
    try:
        url = configured_url(service_url, config)
    except CannotAsk:
        return None
    return None if url is None else Remote(url, timeout_s, token_env, config)


# --- where the service is --------------------------------------------------------------------


def service_section(config: Path | None) -> dict[str, Any]:
    """The `[service]` table of the config (`config`, else $CDMETRICS_CONFIG, else
    ./cdmetrics.toml, which may be absent); raises CannotAsk when a config is there but cannot be
    read. Only this table is read: the rest is the warehouse's business."""
    path = config or Path(os.environ.get(CONFIG_VARIABLE, DEFAULT_CONFIG))
    if path == DEFAULT_CONFIG and not path.exists():
        return {}
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CannotAsk(f"{path}: cannot read the configuration ({exc})") from None
    section = data.get("service", {})
    return section if isinstance(section, dict) else {}


def configured_url(option: str | None, config: Path | None) -> str | None:
    """The service URL of `--service-url`, else CDMETRICS_SERVICE__URL, else `[service] url`
    (None: none, the gate reads the warehouse); raises CannotAsk for an unreadable config."""
    if option is not None:
        return option or None
    if url := os.environ.get(SERVICE_URL_VARIABLE):
        return url
    url = service_section(config).get("url")
    return url if isinstance(url, str) and url else None


def configured_token_env(option: str | None, config: Path | None) -> str:
    """The variable holding the write token: `--token-env`, else
    CDMETRICS_SERVICE__WRITE_TOKEN_ENV, else `[service] write_token_env`, else the default ("":
    send none, for a service whose write scope is open)."""
    if option is not None:
        return option
    if TOKEN_ENV_VARIABLE in os.environ:
        return os.environ[TOKEN_ENV_VARIABLE]
    name = service_section(config).get("write_token_env", DEFAULT_TOKEN_ENV)
    return name if isinstance(name, str) else DEFAULT_TOKEN_ENV


def shown(url: str) -> str:
    """`url` as messages show it: credentials before the host and any query masked (the gate
    refuses such URLs, and says so without repeating what might be a secret)."""
    url = re.sub(r"(?<=//)[^/?#]*@", "***@", url, count=1)
    return re.sub(r"\?.*", "?***", url, count=1, flags=re.DOTALL)


def check_url(url: str) -> None:
    """Raise CannotAsk unless `url` is an http(s) URL with a host and no credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname if parts.port is None or parts.port > 0 else None
    except ValueError:  # a port that is no number, a broken IPv6 address, ...
        host = None
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not host or parts.query or parts.fragment:
        raise CannotAsk(
            f"service URL {shown(url)!r} is not an http(s) URL of `cdmetrics serve` (like "
            "https://cdmetrics.example.com); check --service-url, CDMETRICS_SERVICE__URL or "
            "[service] url"
        )
    if parts.username is not None or parts.password is not None:
        raise CannotAsk(
            f"service URL {shown(url)}: put no credentials in the URL; the write token comes "
            f"from the environment variable --token-env names (default {DEFAULT_TOKEN_ENV})"
        )


# --- asking ----------------------------------------------------------------------------------


def ask(
    remote: Remote, service: str, image: str, to: str, ref: str | None
) -> tuple[dict[str, Any], str | None]:
    """(the decision, None) when the service decided (allow or deny); (its `error` decision, the
    reason) when it answered that it cannot decide (unknown service, warehouse down, ...). Raises
    CannotAsk when there is no decision to print: the service unreachable, slow, refusing, or
    answering something else."""
    import urllib.error
    import urllib.request

    check_url(remote.url)
    where = shown(remote.endpoint)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    variable = configured_token_env(remote.token_env, remote.config)
    token = os.environ.get(variable) if variable else None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"service": service, "image": image, "to": to, "ref": ref}).encode()
    request = urllib.request.Request(remote.endpoint, data=body, headers=headers, method="POST")

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        """Refuse every redirect: urllib would send the Authorization header to the new place."""

        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirects)
    try:
        with opener.open(request, timeout=remote.timeout_s) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, _read(exc)
        location = exc.headers.get("Location") if exc.headers else None
        exc.close()
        if 300 <= status < 400:
            raise CannotAsk(
                f"the cdmetrics service at {where} answered {status}, a redirect to "
                f"{shown(location or '?')}; the gate does not follow redirects (they would carry "
                "the token elsewhere): set the service URL to where it points"
            ) from None
    except TimeoutError:
        raise CannotAsk(_slow(where, remote)) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise CannotAsk(_slow(where, remote)) from None
        raise CannotAsk(
            f"cannot reach the cdmetrics service at {where}: {exc.reason}; check the service URL "
            "(--service-url, CDMETRICS_SERVICE__URL or [service] url) and that `cdmetrics serve` "
            "runs there"
        ) from None
    except OSError as exc:  # reset, refused mid-way, ...
        raise CannotAsk(
            f"the cdmetrics service at {where} failed to answer: {exc}; check that "
            "`cdmetrics serve` runs there and try again"
        ) from None
    return _decision(where, status, payload, variable, token is not None)


def _read(exc: Any) -> bytes:
    try:
        return bytes(exc.read())
    except Exception:  # a body that broke off: the status says enough
        return b""


def _slow(where: str, remote: Remote) -> str:
    return (
        f"the cdmetrics service at {where} did not answer within {remote.timeout_s:g} s; check "
        "that it is up (and its warehouse), or give it longer with --timeout"
    )


def _decision(
    where: str, status: int, payload: bytes, variable: str, sent_token: bool
) -> tuple[dict[str, Any], str | None]:
    """The decision in the service's answer, or CannotAsk saying what the answer was."""
    try:
        answer = json.loads(payload)
    except ValueError:
        answer = None
    if _is_decision(answer):
        if answer["decision"] in ("allow", "deny") and status == 200:
            return answer, None
        if answer["decision"] == "error" and status >= 400:
            return answer, str(answer["reasons"][0]["message"])
    detail = answer.get("detail") if isinstance(answer, dict) else None
    said = f" ({_short(detail)})" if isinstance(detail, str) else ""
    if status == 401:
        sent = (
            f"the token in {variable}"
            if sent_token
            else (f"no token ({variable} is not set)" if variable else "no token (--token-env '')")
        )
        raise CannotAsk(
            f"the cdmetrics service at {where} refused {sent} (401{said}); set {variable or 'it'} "
            "to the service's write token (its [service] write_token_env), or name the variable "
            "holding it with --token-env"
        )
    if status == 403:
        raise CannotAsk(
            f"the cdmetrics service at {where} refuses gate requests (403{said}): its write token "
            "is not configured; set the variable its [service] write_token_env names where "
            "`cdmetrics serve` runs"
        )
    if status == 404:
        raise CannotAsk(
            f"there is no cdmetrics gate at {where} (404{said}); check the service URL "
            "(--service-url, CDMETRICS_SERVICE__URL or [service] url): the base URL of "
            "`cdmetrics serve`, without /api/v1/gate"
        )
    if status == 200:
        what = f"no gate decision: {_short(payload.decode('utf-8', 'replace'))!r}"
    else:
        what = f"{status}{said}" if said or answer is not None else f"{status}, no gate decision"
    raise CannotAsk(
        f"the cdmetrics service at {where} answered {what}; check that the service URL points at "
        "`cdmetrics serve` and see the service's log"
    )


def _is_decision(answer: Any) -> bool:
    """Whether `answer` has the gate's JSON shape (docs/POLICIES.md)."""
    return (
        isinstance(answer, dict)
        and answer.get("decision") in ("allow", "deny", "error")
        and all(isinstance(answer.get(k), str) for k in ("service", "image", "environment"))
        and isinstance(answer.get("reasons"), list)
        and all(
            isinstance(r, dict) and all(isinstance(r.get(k), str) for k in ("policy", "message"))
            for r in answer["reasons"]
        )
        and (answer["decision"] != "error" or bool(answer["reasons"]))
    )


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the command -----------------------------------------------------------------------------


def error_decision(service: str, image: str, to: str, message: str) -> dict[str, Any]:
    """The `error` decision the direct gate writes (analytics.gate.error_decision's JSON)."""
    return {
        "decision": "error",
        "service": service,
        "image": image,
        "digest": None,
        "environment": to,
        "reasons": [{"policy": "gate", "severity": "error", "message": message}],
        "quality_gate": None,
    }


def decide(
    remote: Remote,
    service: str,
    image: str,
    to: str,
    ref: str | None,
    output_format: str,
    output: Path | None,
    fail_open: bool,
) -> int:
    """Ask the service, write the decision as `output_format` (to `output`, else stdout) and the
    reason of a cannot-decide on stderr; the exit code (0 allow, 1 deny, 2 cannot decide, 0 for
    that with `fail_open`)."""
    try:
        decision, problem = ask(remote, service, image, to, ref)
    except CannotAsk as exc:
        decision, problem = error_decision(service, image, to, str(exc)), str(exc)
    except Exception as exc:  # the contract: any failure at all is "cannot decide"
        first = (str(exc).strip().splitlines() or [""])[0]
        problem = f"unexpected error {type(exc).__name__}: {first}".rstrip(": ")
        decision = error_decision(service, image, to, problem)
    return finish(decision, problem, output_format, output, ref is not None, fail_open)


def finish(
    decision: dict[str, Any],
    problem: str | None,
    output_format: str,
    output: Path | None,
    with_ref: bool,
    fail_open: bool,
) -> int:
    """Write `problem` (why the gate cannot decide) on stderr and `decision` to `output` (else
    stdout) as the direct gate does; its exit code."""
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
    text = gate_output.render(decision, output_format, with_ref)
    try:
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {output or 'stdout'}: {exc}", file=sys.stderr)
        return 2
    if decision["decision"] == "error":
        if fail_open:
            print(FAIL_OPEN_NOTE, file=sys.stderr)
            return 0
        return 2
    return 0 if decision["decision"] == "allow" else 1


class _Unusual(Exception):
    """Arguments the thin route leaves to the full command (help, usage errors, ...)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Unusual(message)


def _parser() -> _Parser:
    parser = _Parser(prog="cdmetrics", add_help=False, allow_abbrev=False)
    parser.add_argument("-c", "--config", type=Path)
    parser.add_argument("-w", "--warehouse")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("command", choices=["gate"])
    parser.add_argument("--service", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--ref")
    parser.add_argument(
        "--format", dest="output_format", default="text", choices=gate_output.FORMATS
    )
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("--fail-open", action="store_true")
    parser.add_argument("--service-url")
    parser.add_argument("--token-env")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    return parser


def main(args: list[str]) -> int | None:
    """Run `cdmetrics <args>` on the thin route and return its exit code; None when it is not for
    this route (not `gate`, no service URL, `--warehouse`, help, anything the full command must
    answer, such as a usage error): the caller runs the full command then."""
    if subcommand(args) != "gate" or "--" in args:
        return None
    try:
        options = _parser().parse_args(hoist_global_options(args))
    except _Unusual:
        return None
    if options.warehouse is not None or not options.timeout > 0:
        return None  # the direct gate; both options at once, a bad timeout: its usage error
    o = options
    service = remote(o.service_url, o.token_env, o.timeout, o.config)
    if service is None:
        return None
    if o.verbose:
        print(f"gate: asking the cdmetrics service at {shown(service.endpoint)}", file=sys.stderr)
    return decide(service, o.service, o.image, o.to, o.ref, o.output_format, o.output, o.fail_open)


__all__ = [
    "CannotAsk",
    "Remote",
    "configured_token_env",
    "configured_url",
    "decide",
    "finish",
    "main",
    "remote",
]
