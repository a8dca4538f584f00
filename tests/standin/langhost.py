"""A stand-in for Pulumi's Python language host (`pulumi-language-python`), for the engine tests.

Test equipment, not product. The real host is a Go module the module proxy here does not serve, so
the engine tests put this one on PATH when the engine build has no real host. It speaks the real
LanguageRuntime gRPC protocol and runs programs exactly as the real host does: through the SDK's own
`pulumi-language-python-exec` shim (shipped in the sdk/v3 module and installed beside the CLI by
`scripts/build-engine.sh`), with the same arguments, the `PULUMI_CONFIG` / `PULUMI_CONFIG_SECRET_KEYS`
environment, and the interpreter of the project's `virtualenv` option. So `pulumi up -s dev` from a
shell runs `infra/__main__.py` in a child process of its own, as for a user. Policy packs run through
`RunPlugin` as the real host runs them (`python -m pulumi.policy`, behind a proxy that hands the pack
the stack's configuration).

What it does not reproduce: dependency installation (`pulumi install`), the `toolchain: uv|poetry`
options, type checking before a run, debugging, and code generation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, language_pb2, language_pb2_grpc, plugin_pb2

EXEC_SHIM = "pulumi-language-python-exec"
BAIL_EXIT = 32  # the exec shim's "already showed the user an actionable message"


def _options(info: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    if info is None or not info.HasField("options"):
        return {}
    return dict(json_format.MessageToDict(info.options))


def python_for(info: Any) -> tuple[str, dict[str, str]]:
    """The interpreter the program runs with, and environment changes, from the runtime options."""
    options = _options(info)
    env: dict[str, str] = {}
    venv = options.get("virtualenv")
    if not venv:
        return os.environ.get("PULUMI_PYTHON_CMD", sys.executable), env
    root = Path(info.root_directory or ".")
    path = Path(venv) if Path(venv).is_absolute() else root / venv
    python = path / "bin" / "python"
    if not python.exists():
        raise RuntimeError(
            f"The 'virtualenv' option in Pulumi.yaml is set to {str(venv)!r}, but {path} doesn't exist"
        )
    env["VIRTUAL_ENV"] = str(path)
    env["PATH"] = f"{path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(python), env


def sdk_version() -> str:
    from importlib.metadata import version

    return version("pulumi")


def exec_shim() -> str:
    found = shutil.which(EXEC_SHIM)
    if found is None:
        raise RuntimeError(f"{EXEC_SHIM} is not on PATH (scripts/build-engine.sh installs it beside the CLI)")
    return found


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    def __init__(self, engine_address: str) -> None:
        self.engine_address = engine_address
        self._children: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    # -- lifecycle

    def Handshake(self, request: Any, context: Any) -> Any:
        self.engine_address = request.engine_address or self.engine_address
        watch_engine(self.engine_address)
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=sdk_version())

    def Cancel(self, request: Any, context: Any) -> Any:
        with self._lock:
            children = list(self._children)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        return empty_pb2.Empty()

    # -- what the engine asks before a run

    def GetRequiredPlugins(self, request: Any, context: Any) -> Any:
        return language_pb2.GetRequiredPluginsResponse()

    def GetRequiredPackages(self, request: Any, context: Any) -> Any:
        # The real host lists the installed pulumi_* packages; the engine then loads each plugin when a
        # provider is registered anyway, which is all the stand-in providers need.
        return language_pb2.GetRequiredPackagesResponse()

    def InstallDependencies(self, request: Any, context: Any) -> Any:
        return iter(())

    def RuntimeOptionsPrompts(self, request: Any, context: Any) -> Any:
        return language_pb2.RuntimeOptionsResponse()

    def About(self, request: Any, context: Any) -> Any:
        python, _ = python_for(request.info if request.HasField("info") else None)
        return language_pb2.AboutResponse(executable=python, version=sys.version.split()[0])

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:
        return language_pb2.GetProgramDependenciesResponse()

    # -- running

    def _spawn(self, args: list[str], env: dict[str, str], cwd: str | None, **kwargs: Any) -> int:
        child = subprocess.Popen(args, env=env, cwd=cwd or None, **kwargs)
        with self._lock:
            self._children.add(child)
        try:
            return child.wait()
        finally:
            with self._lock:
                self._children.discard(child)

    def Run(self, request: Any, context: Any) -> Any:
        try:
            python, extra = python_for(request.info)
            shim = exec_shim()
        except RuntimeError as exc:
            return language_pb2.RunResponse(error=str(exc))
        args = [python, "-u", shim]
        for flag, value in (
            ("monitor", request.monitor_address),
            ("engine", self.engine_address),
            ("project", request.project),
            ("root_directory", request.info.root_directory),
            ("stack", request.stack),
            ("pwd", request.pwd),
            ("dry_run", "true" if request.dryRun else "false"),
            ("parallel", str(request.parallel)),
            ("organization", request.organization),
        ):
            if value:
                args += [f"--{flag}", value]
        args.append(request.info.entry_point or ".")
        args += list(request.args)
        env = {**os.environ, **extra}
        if request.config:
            env["PULUMI_CONFIG"] = json.dumps(dict(request.config))
        env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        code = self._spawn(args, env, request.pwd)
        if code == 0:
            return language_pb2.RunResponse()
        if code == BAIL_EXIT:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"program exited with non-zero exit code: {code}")

    def RunPlugin(self, request: Any, context: Any) -> Any:
        python, extra = python_for(request.info)
        env = {**os.environ, **extra}
        proxy: PolicyProxy | None = None
        if request.kind == "analyzer":
            # As the real host: policy packs run as `python -m pulumi.policy ARGS DIR` in their own
            # directory, behind a proxy that learns the stack's configuration from the engine first.
            args = [python, "-u", "-m", "pulumi.policy", *request.args, request.info.program_directory]
            cwd = request.info.program_directory
            proxy = PolicyProxy()
            yield language_pb2.RunPluginResponse(stdout=f"{proxy.port}\n".encode())
            config = proxy.configuration()
            if config is not None:
                for key, value in (
                    ("PULUMI_ORGANIZATION", config.organization),
                    ("PULUMI_PROJECT", config.project),
                    ("PULUMI_STACK", config.stack),
                    ("PULUMI_DRY_RUN", "true" if config.dry_run else "false"),
                    ("PULUMI_CONFIG", json.dumps(dict(config.config)) if config.config else ""),
                ):
                    if value:
                        env[key] = value
        else:
            args = [python, request.info.program_directory, *request.args]
            cwd = request.pwd
        for item in request.env:
            key, _, value = item.partition("=")
            env[key] = value
        child = subprocess.Popen(
            args, env=env, cwd=cwd or None, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        with self._lock:
            self._children.add(child)
        if proxy is not None:
            assert child.stdout is not None
            line = child.stdout.readline()
            try:
                proxy.attach(int(line.strip()))
            except ValueError:
                proxy.abort(f"could not read policy pack port: {line!r}")
        out: list[Any] = []
        cond = threading.Condition()

        def pump(stream: Any, field: str) -> None:
            for chunk in iter(lambda: stream.read1(4096), b""):
                with cond:
                    out.append(language_pb2.RunPluginResponse(**{field: chunk}))
                    cond.notify()
            with cond:
                out.append(None)
                cond.notify()

        for stream, field in ((child.stdout, "stdout"), (child.stderr, "stderr")):
            threading.Thread(target=pump, args=(stream, field), daemon=True).start()
        ended = 0
        while ended < 2:
            with cond:
                while not out:
                    cond.wait()
                item = out.pop(0)
            if item is None:
                ended += 1
            else:
                yield item
        code = child.wait()
        with self._lock:
            self._children.discard(child)
        if proxy is not None:
            proxy.stop()
        yield language_pb2.RunPluginResponse(exitcode=code)


class PolicyProxy(analyzer_pb2_grpc.AnalyzerServicer):
    """The Analyzer the engine talks to first: it takes the stack configuration, then forwards.

    The engine calls ConfigureStack (stack, project, config) before anything else when it has that
    information; the pack is started only then, with the configuration in its environment, and every
    later call is forwarded to it.
    """

    def __init__(self) -> None:
        self._config: list[Any] = []
        self._configured = threading.Event()
        self._attached = threading.Event()
        self._stub: Any = None
        self._error = ""
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        analyzer_pb2_grpc.add_AnalyzerServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def configuration(self) -> Any:
        self._configured.wait()
        return self._config[0] if self._config else None

    def attach(self, port: int) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self._stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        if self._config:
            try:
                self._stub.ConfigureStack(self._config[0])
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    self._error = f"policy pack configuration failed: {exc.details()}"
        self._attached.set()

    def abort(self, message: str) -> None:
        self._error = message
        self._attached.set()

    def stop(self) -> None:
        self._server.stop(grace=None)

    def _client(self, context: Any) -> Any:
        self._configured.set()  # a call before ConfigureStack: the pack starts without configuration
        self._attached.wait()
        if self._error:
            context.abort(grpc.StatusCode.UNAVAILABLE, self._error)
        return self._stub

    def ConfigureStack(self, request: Any, context: Any) -> Any:
        if not self._configured.is_set():
            self._config.append(request)
            self._configured.set()
        return analyzer_pb2.AnalyzerStackConfigureResponse()

    def Handshake(self, request: Any, context: Any) -> Any:
        return analyzer_pb2.AnalyzerHandshakeResponse()

    def Analyze(self, request: Any, context: Any) -> Any:
        return self._client(context).Analyze(request)

    def AnalyzeStack(self, request: Any, context: Any) -> Any:
        return self._client(context).AnalyzeStack(request)

    def Remediate(self, request: Any, context: Any) -> Any:
        return self._client(context).Remediate(request)

    def GetAnalyzerInfo(self, request: Any, context: Any) -> Any:
        return self._client(context).GetAnalyzerInfo(request)

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return self._client(context).GetPluginInfo(request)

    def Configure(self, request: Any, context: Any) -> Any:
        return self._client(context).Configure(request)

    def Cancel(self, request: Any, context: Any) -> Any:
        return self._client(context).Cancel(request)


def watch_engine(address: str) -> None:
    """Exit when the engine that started us is gone (the real plugins health-check it the same way)."""
    if not address or getattr(watch_engine, "started", False):
        return
    watch_engine.started = True  # type: ignore[attr-defined]
    host, _, port = address.rpartition(":")

    def loop() -> None:
        failures = 0
        while True:
            time.sleep(1.0)
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
                    failures = 0
            except OSError:
                failures += 1
                if failures >= 3:
                    os._exit(0)

    threading.Thread(target=loop, daemon=True).start()


def main(argv: list[str]) -> int:
    if "--version" in argv:
        print(sdk_version())
        return 0
    positional = [a for a in argv if not a.startswith("-")]
    engine = positional[0] if positional else ""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)],
    )
    host = LanguageHost(engine)
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(host, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    watch_engine(engine)

    def stop(signum: int, frame: Any) -> None:
        # As the real host: an interrupt (the engine closing its plugins, or Ctrl-C) stops serving.
        host.Cancel(None, None)
        server.stop(grace=None)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    server.wait_for_termination()
    return 0


_ = struct_pb2  # imported for the generated messages' descriptors

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
