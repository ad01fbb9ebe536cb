"""
Real infrastructure for tests: HAProxy, nginx and squid from the operating system's packages, each run in the
foreground on a loopback port with a configuration written for one test, and stopped after it.

`.ci/run` installs them (Debian's ``haproxy``, ``nginx-light`` and ``squid``) and sets ``REHOOK_REQUIRE_INFRA=1``,
so that a missing program fails there; elsewhere a test that needs one skips, naming the package.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

__all__ = ["free_port", "haproxy", "need", "nginx", "squid"]

REQUIRE_ENV = "REHOOK_REQUIRE_INFRA"
_PACKAGES = {"haproxy": "haproxy", "nginx": "nginx-light", "squid": "squid"}
_STARTUP = 30.0  # seconds a program may take to listen; it is waited for, not assumed


def need(program: str) -> str:
    """
    The program's path; skips the test when it is not installed (fails under ``REHOOK_REQUIRE_INFRA=1``).
    """
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        reason = f"{program} is not installed (apt-get install {_PACKAGES[program]}): .ci/run installs it"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _folder() -> Path:
    # Not pytest's tmp_path: nginx's workers and squid drop root for an unprivileged user, which must reach it.
    folder = Path(tempfile.mkdtemp(prefix="rehook-infra-"))
    folder.chmod(0o777)
    return folder


@contextlib.asynccontextmanager
async def _running(argv: list[str], port: int, folder: Path) -> AsyncIterator[None]:
    log = folder / "output.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(*argv, stdout=output, stderr=subprocess.STDOUT)
        try:
            await _until_listening(port, process, log)
            yield
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            shutil.rmtree(folder, ignore_errors=True)


async def _until_listening(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + _STARTUP
    while True:
        if process.returncode is not None:
            raise AssertionError(f"exited with {process.returncode} before listening:\n{_read(log)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > until:
                raise AssertionError(f"not listening on {port} after {_STARTUP} s:\n{_read(log)}") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def haproxy(upstream: int, *, defaults: str = "", backend: str = "") -> AsyncIterator[str]:
    """
    HAProxy in HTTP mode in front of ``127.0.0.1:upstream``; yields its URL. ``defaults`` lines (``timeout
    server 100ms``...) override the ones here.
    """
    program = need("haproxy")
    port = free_port()
    folder = _folder()
    config = folder / "haproxy.cfg"
    config.write_text(
        "global\n    log stderr format short local0 notice\n"
        "defaults\n    mode http\n    log global\n    timeout connect 2s\n    timeout client 30s\n"
        "    timeout server 30s\n"
        f"{_indent(defaults)}"
        f"frontend front\n    bind 127.0.0.1:{port}\n    default_backend rehook\n"
        f"backend rehook\n{_indent(backend)}    server fake 127.0.0.1:{upstream}\n"
    )
    async with _running([program, "-f", str(config), "-db"], port, folder):
        yield f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def nginx(upstream: int, *, http: str = "", location: str = "") -> AsyncIterator[str]:
    """
    nginx as a reverse proxy to ``127.0.0.1:upstream``; yields its URL. ``http`` and ``location`` are extra
    directives for those blocks.
    """
    program = need("nginx")
    port = free_port()
    folder = _folder()
    temp = "".join(
        f"    {kind}_temp_path {folder / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = folder / "nginx.conf"
    config.write_text(
        f"worker_processes 1;\nerror_log stderr warn;\npid {folder / 'nginx.pid'};\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n    access_log off;\n{temp}{_indent(http)}"
        f"    upstream rehook {{ server 127.0.0.1:{upstream}; keepalive 16; }}\n"
        f"    server {{\n        listen 127.0.0.1:{port};\n"
        "        location / {\n            proxy_pass http://rehook;\n            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        f"{_indent(location, 12)}        }}\n    }}\n}}\n"
    )
    argv = [program, "-p", str(folder), "-c", str(config), "-g", "daemon off;"]
    async with _running(argv, port, folder):
        yield f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def squid(user: str, password: str) -> AsyncIterator[str]:
    """
    squid as a forward proxy that wants Basic credentials ``user:password`` (anything else: 407); yields its URL
    without credentials.
    """
    program = need("squid")
    port = free_port()
    folder = _folder()
    helper = _squid_files(folder, user, password)
    config = folder / "squid.conf"
    config.write_text(
        f"http_port 127.0.0.1:{port}\npid_filename {folder / 'squid.pid'}\ncache_log stdio:{folder / 'cache.log'}\n"
        f"access_log stdio:{folder / 'access.log'}\ncache deny all\ncache_mem 8 MB\ncoredump_dir {folder}\n"
        f"auth_param basic program {helper} {folder / 'passwd'}\nauth_param basic realm rehook-sdk tests\n"
        "acl authed proxy_auth REQUIRED\nhttp_access allow authed\nhttp_access deny all\n"
        "shutdown_lifetime 0 seconds\n"
    )
    async with _running([program, "-N", "-f", str(config)], port, folder):
        yield f"http://127.0.0.1:{port}"


def _squid_files(folder: Path, user: str, password: str) -> Path:
    """
    The password file squid's Basic helper reads (an Apache MD5 hash, made by openssl); the helper's path.
    """
    helper = Path("/usr/lib/squid/basic_ncsa_auth")
    if not helper.exists():
        pytest.fail(f"squid is installed without its {helper}")
    hashed = subprocess.run(
        ["openssl", "passwd", "-apr1", password], capture_output=True, text=True, check=True
    ).stdout.strip()
    passwords = folder / "passwd"
    passwords.write_text(f"{user}:{hashed}\n")
    passwords.chmod(0o644)
    return helper


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


def _indent(lines: str, spaces: int = 4) -> str:
    return "".join(f"{' ' * spaces}{line.strip()}\n" for line in lines.splitlines() if line.strip())
