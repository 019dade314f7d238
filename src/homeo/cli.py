"""The `homeo` command line: serve, worker, run, runs, batch, agents, eval, keys, doctor, mcp,
sandbox, slo, autonomic, chaos, audit, models."""

from __future__ import annotations

import asyncio
import enum
import errno
import gc
import os
import signal
import socket
import sys
from typing import Annotated

import typer
from rich.console import Console

from homeo.cli_common import (
    CONTEXT,
    AgentsDir,
    DatabaseUrl,
    DataDir,
    Json,
    Tenant,
    Workers,
    console,
    fail,
    json_errors,
    open_runtime,
    opened,
    print_json,
    settings_or_exit,
)
from homeo.cli_audit import audit_app, audit_log_or_exit
from homeo.cli_canary import canary_command, promote_command, rollback_command
from homeo.cli_autonomic import autonomic_app
from homeo.cli_batch import batch_app
from homeo.cli_chaos import chaos_app
from homeo.cli_crypto import crypto_app
from homeo.cli_evolve import agent_versions, eval_app
from homeo.cli_evolve_search import evolve
from homeo.cli_memory import memory_app
from homeo.cli_models import models_app
from homeo.cli_runs import prune as prune_checkpoints
from homeo.cli_runs import runs_app
from homeo.cli_safety import safety_app
from homeo.cli_slo import slo_app
from homeo.cli_train import train_app
from homeo.db.url import redact
from homeo.engine.agents import AgentError
from homeo.observe import logs

app = typer.Typer(help="homeo: run AI agents durably, securely and observably.",
                  context_settings=CONTEXT)
app.add_typer(runs_app, name="runs")
app.add_typer(batch_app, name="batch")
app.command("prune")(prune_checkpoints)
app.add_typer(memory_app, name="memory")
app.add_typer(models_app, name="models")
app.add_typer(safety_app, name="safety")
app.add_typer(slo_app, name="slo")
app.add_typer(autonomic_app, name="autonomic")
app.add_typer(chaos_app, name="chaos")
app.add_typer(eval_app, name="eval")
app.command("evolve")(evolve)
app.add_typer(audit_app, name="audit")
app.add_typer(crypto_app, name="crypto")
app.add_typer(train_app, name="train")


def _print_version(given: bool) -> None:
    if given:
        from importlib.metadata import version

        print(f"homeo {version('homeo')}")
        raise typer.Exit()


FIRST_STEPS = """\
homeo: run AI agents durably, securely and observably. To begin:

  homeo doctor                 what this machine has (databases, sandbox, models)
  homeo agents                 the agents it can run (HOMEO_AGENTS_DIR)
  homeo run calculator "2+2"   run one here and watch its steps
  homeo serve                  the HTTP API on 127.0.0.1:8080 (shows a first API key)

`homeo --help` lists every command; `homeo COMMAND --help` explains one.
`homeo --install-completion` adds tab completion to your shell."""


@app.callback(invoke_without_command=True)
def _root(
    context: typer.Context,
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.",
    )] = False,
) -> None:
    """homeo: run AI agents durably, securely and observably.

    Exit status: 0 done, 1 failed (the message says why), 2 bad usage or
    settings, 3 a run waits for a person, 130 stopped by Ctrl-C."""
    if context.invoked_subcommand is None:
        print(FIRST_STEPS)


def _steady_gc() -> None:
    """For a long-running process, once it has started: what exists now (modules,
    the app, settings) lives as long as the process, so it is kept out of every
    collection, and the young generation is collected less often. Without this,
    full collections that scan the whole start-up heap stopped `homeo serve`
    for 80-270 ms at a time under load (bench/router_overhead.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [HOMEO_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [HOMEO_PORT].")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    agents_dir: AgentsDir = None,
    workers: Workers = None,
) -> None:
    """Serve the HTTP API with an in-process worker pool (--workers 0 for API only)."""
    settings = settings_or_exit(host=host, port=port, data_dir=data_dir,
                                database_url=database_url, agents_dir=agents_dir, workers=workers)
    # The certificate and the address first: if either is unusable, nothing is printed,
    # opened or made.
    http = _http_protocol(settings)
    listener = _listen(settings.host, settings.port)
    # The API and the server load only now (seconds): a bad setting above fails fast.
    import uvicorn

    from homeo.api.app import create_app

    logs.configure(settings.log_level, settings.log_json)
    runtime = open_runtime(settings)
    audit_log_or_exit(settings, runtime.backends.store)  # a bad audit key stops us here
    _first_key(runtime)
    worker = runtime.worker() if settings.workers > 0 else None
    autonomic = (runtime.autonomic_loop(f"serve:{socket.gethostname()}:{os.getpid()}")
                 if settings.autonomic == "on" else None)
    api = create_app(settings, runtime.backends, runtime.metrics, worker, runtime.models,
                     runtime.tracer_provider, autonomic_loop=autonomic,
                     guards=runtime.safety, control=runtime.control)
    tls = (f"(TLS 1.3, X25519MLKEM768 preferred, certificate {settings.tls_cert_file}) "
           if settings.tls_enabled() else "")
    console.print(
        f"homeo serving {'https' if tls else 'http'}://{settings.host}:{settings.port} {tls}"
        f"(database {redact(settings.resolved_database_url())}, "
        + (f"queue {redact(settings.queue_url)}, " if settings.queue_url else "")
        + f"{settings.workers} worker slots)",
        markup=False,
    )
    # uvicorn stops gracefully on SIGTERM (the worker pool releases its runs), then
    # raises the signal again; exit 0 through `finally` then, as `homeo worker` does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    _steady_gc()
    # On SIGTERM requests in flight get the same grace period as the workers' steps.
    # proxy_headers off: uvicorn would otherwise take the client address from
    # X-Forwarded-For sent by any local process, and failed logins are throttled
    # by that address.
    server = uvicorn.Server(uvicorn.Config(
        api, http=http, log_level="warning", access_log=False, proxy_headers=False,
        timeout_graceful_shutdown=max(int(settings.shutdown_grace_seconds), 1)))
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
        asyncio.run(runtime.aclose())


def _http_protocol(settings):  # noqa: ANN001, ANN202 (Settings; uvicorn's `http` argument)
    """uvicorn's own HTTP protocol, or, with a certificate configured, the same
    behind TLS (homeo.tls); exit 2 saying what is wrong with the certificate or key."""
    if not settings.tls_enabled():
        return "auto"
    from homeo.tls import TLSConfigError, https_protocol, server_context

    try:
        context = server_context(settings.tls_cert_file, settings.tls_key_file)
    except TLSConfigError as error:
        fail(str(error), code=2)
    return https_protocol(context, settings.tls_handshake_timeout_seconds)


LISTEN_BACKLOG = 2048  # uvicorn's default


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or exit 2 with one line saying why not
    and what to do. Listening (not only binding) claims the port, so a second
    `homeo serve` on it fails here too."""
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        fail(f"cannot serve on {where}: {host!r} is not an address ({error.strerror}); give one"
             " of this machine's with --host (or HOMEO_HOST), e.g. 127.0.0.1", code=2)
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        listener.bind(address)
        listener.listen(LISTEN_BACKLOG)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            fail(f"{where} is already in use by another process; stop that process, or serve on"
                 " another port with --port (or HOMEO_PORT)", code=2)
        if error.errno == errno.EACCES:
            fail(f"cannot serve on {where}: permission denied (ports below 1024 need privileges);"
                 " choose another port with --port (or HOMEO_PORT), e.g. 8080", code=2)
        fail(f"cannot serve on {where}: {error.strerror}; choose an address of this machine with"
             " --host and a free port with --port (or HOMEO_HOST, HOMEO_PORT)", code=2)
    return listener


def _first_key(runtime) -> None:  # noqa: ANN001 (Runtime, imported late)
    """The API needs a key: on a store with none, make one for the default
    tenant and show it once, so a fresh `homeo serve` can be used at once."""
    from homeo.keys import create_key

    store = runtime.backends.store
    if store.list_keys():
        return
    key, _ = create_key(store, runtime.settings.default_tenant, "made by the first homeo serve",
                        role="admin", audit=audit_log_or_exit(runtime.settings, store),
                        actor="homeo serve")
    console.print(
        f"homeo: no API keys yet, so here is an admin key for tenant"
        f" {runtime.settings.default_tenant!r} (shown only now): {key}\n"
        "homeo: send it as `Authorization: Bearer <key>`; `homeo keys create` makes more",
        markup=False,
    )


@app.command()
def worker(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    agents_dir: AgentsDir = None,
    workers: Workers = None,
    processes: Annotated[int | None, typer.Option(
        "--processes", help="Keep this many worker processes, restarting one that dies"
                            " (and one the autonomic loop finds dead).")] = None,
    until_idle: Annotated[bool, typer.Option(
        "--until-idle", help="Run the jobs that are due one at a time, then exit"
                             " (a run that waits for a person stays waiting).")] = False,
) -> None:
    """Run workers only, sharing the database with `homeo serve` and other workers."""
    settings = settings_or_exit(data_dir=data_dir, database_url=database_url, agents_dir=agents_dir,
                         workers=workers)
    if settings.workers < 1:
        fail("a worker process needs --workers 1 or more")
    if until_idle:
        if processes is not None:
            fail("--until-idle runs in this process: leave out --processes")
        logs.configure(settings.log_level, settings.log_json)
        runtime = open_runtime(settings)
        try:
            done = asyncio.run(runtime.worker().run_until_idle())
        finally:
            asyncio.run(runtime.aclose())
        console.print(f"homeo: ran {done} job(s); none is due now", markup=False)
        return
    if processes is not None:
        if processes < 1:
            fail(f"--processes must be 1 or more, not {processes}")
        _supervise(settings, processes)
        return
    logs.configure(settings.log_level, settings.log_json)
    runtime = open_runtime(settings)
    _steady_gc()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        pool = runtime.worker()
        tasks = [pool.serve(stop)]
        if settings.autonomic == "on":
            tasks.append(runtime.autonomic_loop(pool.worker_id).run(stop))
        try:
            await asyncio.gather(*tasks)
        finally:
            await runtime.aclose()

    asyncio.run(main())


def _supervise(settings, processes: int) -> None:  # noqa: ANN001 (Settings)
    """`homeo worker --processes N`: N `homeo worker` children, kept alive."""
    import subprocess
    import threading

    from homeo.backends import open_backends
    from homeo.engine.processes import ProcessSupervisor

    logs.configure(settings.log_level, settings.log_json)
    command = [sys.executable, "-c", "from homeo.cli import main; main()", "worker",
               "--database-url", settings.resolved_database_url(),
               "--workers", str(settings.workers), "--agents-dir", str(settings.agents_dir),
               "--data-dir", str(settings.data_dir)]
    backends = open_backends(settings.resolved_database_url(), queue_url=settings.queue_url or None)
    supervisor = ProcessSupervisor(lambda slot: subprocess.Popen(command), backends.store,
                                   backends.queue, count=processes)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        supervisor.serve(stop)
    finally:
        backends.close()


@app.command()
def run(
    agent: Annotated[str, typer.Argument(help="The agent's name.")],
    input: Annotated[str, typer.Argument(help="The task for the agent.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    agents_dir: AgentsDir = None,
    as_json: Json = False,
    user: Annotated[str | None, typer.Option(
        "--user", help="The person the run works for: whose memory an agent with"
                       " `memory: {scope: user}` reaches (such an agent needs it).")] = None,
) -> None:
    """Run an agent now and show its progress step by step.

    The run goes through the durable queue like any other; this process works
    the queue until the run ends. Ctrl-C pauses the run when its current step
    ends (exit 130; `homeo worker` resumes it), a second Ctrl-C leaves at once.
    Exit 0 succeeded, 1 failed or cancelled, 3 waiting for a person. With
    --json the progress goes to stderr and the run, as GET /v1/runs/{id}
    shows it, to stdout."""
    from homeo.cli_progress import run_with_progress

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url, agents_dir=agents_dir)
    logs.configure("warning", settings.log_json)
    runtime = open_runtime(settings)

    def report(run) -> None:  # noqa: ANN001 (Run, imported late)
        from homeo.api.schemas import RunDetail, RunView, StepView

        steps = runtime.backends.store.list_steps(run.tenant_id, run.id)
        print_json(RunDetail(**RunView.of(run).model_dump(),
                             steps=[StepView.of(step) for step in steps]).model_dump(mode="json"))

    try:
        code = asyncio.run(run_with_progress(
            runtime, agent, input, console if as_json else Console(soft_wrap=True), console,
            report=report if as_json else None, user=user))
    finally:
        asyncio.run(runtime.aclose())
    raise typer.Exit(code)


agents_app = typer.Typer(help="The agents folder's agents, and each agent's versions.",
                         invoke_without_command=True, context_settings=CONTEXT)
app.add_typer(agents_app, name="agents")


@agents_app.callback()
def list_agents(ctx: typer.Context, agents_dir: AgentsDir = None, as_json: Json = False) -> None:
    """List the agents defined in the agents folder, and what is wrong with its files.

    Exit 1 if a file is wrong."""
    if ctx.invoked_subcommand is not None:
        return
    from homeo.engine.agents import scan_agents
    from homeo.llm.resolve import ModelCatalog

    settings = settings_or_exit(agents_dir=agents_dir)
    folder = scan_agents(settings.agents_dir, ModelCatalog(settings), settings.mcp_servers)
    if as_json:  # as GET /v1/agents lists them
        print_json([{"name": spec.name, "description": spec.description, "model": spec.model,
                     "tools": spec.tools, "max_steps": spec.max_steps}
                    for spec in folder.specs.values()])
    else:
        out = Console(soft_wrap=True)
        for spec in folder.specs.values():
            tools = ", ".join(t.rpartition(":")[2] for t in spec.tools) or "no tools"
            out.print(f"{spec.name:<16} {spec.model:<12} {tools:<24} {spec.description}",
                      markup=False)
    for problem in folder.problems:
        console.print(f"homeo: {problem}", markup=False)
    if folder.problems:
        raise typer.Exit(1)


agents_app.command("versions")(agent_versions)
agents_app.command("canary")(canary_command)
agents_app.command("promote")(promote_command)
agents_app.command("rollback")(rollback_command)


@app.command()
def doctor(database_url: DatabaseUrl = None, data_dir: DataDir = None,
           as_json: Json = False) -> None:
    """Tell what is real on this machine and what is missing, with the fix."""
    import dataclasses

    from rich.markup import escape

    from homeo.doctor import run_checks

    settings = settings_or_exit(database_url=database_url, data_dir=data_dir)
    if as_json:
        print_json([dataclasses.asdict(check) for check in run_checks(settings)])
        return
    out = Console(soft_wrap=True, highlight=False)
    styles = {"ok": "green", "missing": "red", "info": "cyan"}
    for check in run_checks(settings):
        out.print(f"[{styles[check.status]}]{check.status:<8}[/] {check.name:<16} "
                  f"{escape(check.detail)}")
        if check.fix:
            out.print(f"{'':<25} fix: {check.fix}", markup=False)


@app.command("mcp")
def mcp_server(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    agents_dir: AgentsDir = None,
) -> None:
    """Serve the agents as MCP tools over stdio, for an MCP client to launch.

    Each agent is a tool taking `input`; a call runs the agent through the
    durable queue in this process and returns its output."""
    from homeo.mcp.serve import build_server

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url, agents_dir=agents_dir)
    logs.configure("warning", settings.log_json)  # stdout carries the protocol; logs go to stderr
    runtime = open_runtime(settings)
    try:
        build_server(runtime).run("stdio")
    finally:
        asyncio.run(runtime.aclose())


class KeyRoleOption(str, enum.Enum):
    viewer = "viewer"
    member = "member"
    operator = "operator"
    admin = "admin"


keys_app = typer.Typer(help="Make, list and revoke API keys.", no_args_is_help=True,
                       context_settings=CONTEXT)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    tenant: Tenant = None,
    name: Annotated[str, typer.Option(help="What the key is for, shown by `keys list`.")] = "",
    role: Annotated[KeyRoleOption, typer.Option(
        help="viewer: reads runs and metrics; member: also runs agents and uses the API;"
        " operator: also cancels any run of the tenant; admin: also manages its keys."
    )] = KeyRoleOption.member,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Json = False,
) -> None:
    """Make an API key for a tenant and print it (it is shown only this once).

    The key goes to stdout alone, so `KEY=$(homeo keys create)` works (with
    --json: the key and its record, as POST /v1/keys answers); the agents
    folder is published for the tenant, so it can run them at once."""
    from homeo.keys import create_key

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url,
                         default_tenant=tenant)
    with opened(settings) as runtime:
        key, record = create_key(runtime.backends.store, settings.default_tenant, name,
                                 role=role.value,
                                 audit=audit_log_or_exit(settings, runtime.backends.store))
    console.print(f"homeo: {record.role} key {record.id} for tenant {record.tenant_id!r}; it is"
                  " shown only now, keep it", markup=False)
    if as_json:
        print_json({"key": key, **_key_json(record)})
    else:
        print(key)


def _key_json(record) -> dict:  # noqa: ANN001 (ApiKey, imported late)
    """A key as GET /v1/keys lists it: never its secret."""
    return {"active": record.active, **record.model_dump(exclude={"secret_hash"})}


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Json = False,
) -> None:
    """List API keys (ids, never secrets), oldest first."""
    import datetime

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
    with opened(settings) as runtime:
        records = runtime.backends.store.list_keys(tenant)
    if as_json:
        print_json([_key_json(record) for record in records])
        return
    out = Console(soft_wrap=True)
    for record in records:
        created = datetime.datetime.fromtimestamp(record.created_at, datetime.UTC)
        status = "active" if record.active else "revoked"
        out.print(f"{record.id}  {record.tenant_id:<16} {record.role:<8} {status:<8} "
                  f"{created:%Y-%m-%d %H:%M}Z  {record.name}", markup=False)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (as `keys list` shows it).")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Json = False,
) -> None:
    """Revoke an API key: requests with it are refused within 5 seconds."""
    from homeo.keys import revoke_key

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
    with opened(settings) as runtime:
        record = revoke_key(runtime.backends.store, key_id.removeprefix("hk_")[:16],
                            audit=audit_log_or_exit(settings, runtime.backends.store))
    if record is None:
        fail(f"no API key {key_id!r}; `homeo keys list` shows them")
    console.print(f"homeo: key {record.id} of tenant {record.tenant_id!r} is revoked",
                  markup=False)
    if as_json:
        print_json(_key_json(record))


sandbox_app = typer.Typer(help="Run commands in the sandbox that tools use.",
                          no_args_is_help=True, context_settings=CONTEXT)
app.add_typer(sandbox_app, name="sandbox")
Size = Annotated[str | None, typer.Option(help="Memory, e.g. 256M [HOMEO_SANDBOX_MEMORY].")]
Duration = Annotated[str | None, typer.Option(help="Wall clock, e.g. 5s [HOMEO_SANDBOX_TIMEOUT].")]
Pids = Annotated[int | None, typer.Option(help="Processes+threads [HOMEO_SANDBOX_PIDS].")]
Cpu = Annotated[float | None, typer.Option(help="CPU cores, e.g. 0.5 [HOMEO_SANDBOX_CPU].")]


@sandbox_app.command("run")
def sandbox_run(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after --.")],
    memory: Size = None,
    timeout: Duration = None,
    pids: Pids = None,
    cpu: Cpu = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: exit code,"
                                          " output, time, limits hit, files written.")] = False,
) -> None:
    """Run CMD in the sandbox and print its output; the exit status is the command's.

    A summary (exit code, time, limits hit, files written to /scratch) goes to
    stderr. Exit status 125 means the sandbox itself could not run."""
    from homeo.sandbox import SandboxError
    from homeo.sandbox import run as sandboxed
    from homeo.sandbox.layers import parse_allow_without
    from homeo.sandbox.limits import limits_from_settings

    with json_errors(as_json):
        settings = settings_or_exit(sandbox_memory=memory, sandbox_timeout=timeout,
                                    sandbox_pids=pids, sandbox_cpu=cpu)
        try:
            result = sandboxed(command, limits_from_settings(settings),
                               allow_without=parse_allow_without(settings.sandbox_allow_without))
        except SandboxError as error:
            fail(str(error), code=125)
    if as_json:
        print_json({
            "exit_code": result.exit_code, "signal": result.signal,
            "stdout": result.stdout.decode(errors="replace"),
            "stderr": result.stderr.decode(errors="replace"),
            "duration_seconds": result.duration_seconds, "timed_out": result.timed_out,
            "oom_killed": result.oom_killed, "stdout_truncated": result.stdout_truncated,
            "stderr_truncated": result.stderr_truncated, "files": sorted(result.files),
            "files_truncated": result.files_truncated, "layers": list(result.layers)})
        raise typer.Exit(result.exit_code)
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    notes = [name for name, hit in (("timed out", result.timed_out),
                                    ("out of memory", result.oom_killed),
                                    ("stdout truncated", result.stdout_truncated),
                                    ("stderr truncated", result.stderr_truncated)) if hit]
    if result.files:
        notes.append("wrote " + ", ".join(sorted(result.files)))
    console.print(f"homeo: exit {result.exit_code} in {result.duration_seconds * 1000:.0f} ms"
                  + "".join(f"; {note}" for note in notes), markup=False)
    raise typer.Exit(result.exit_code)


def main() -> None:
    from homeo.crypto.errors import CryptoError
    from homeo.store.sealed import SealedDataError

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except (CryptoError, SealedDataError) as error:  # a sensitive tenant's data, no key for it
        console.print(f"homeo: {error}", markup=False)
        sys.exit(2)
