"""``lvbao run``: the whole system on one machine, started and stopped as one."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lvbao import registry
from lvbao.embedded import EmbeddedRedis


class EmbeddedRun:
    def __init__(self, port: int, var: Path):
        self.port = port
        self.var = var.resolve()
        self.children: list[subprocess.Popen] = []
        self.redis: EmbeddedRedis | None = None
        self.stopping = False

    def _secrets(self) -> dict[str, str]:
        """Secrets of this local install, made once and kept (mode 0600) beside the embedded data."""
        path = self.var / "secrets.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        for name in ("operator_key_secret", "wechat_secret"):
            data.setdefault(name, secrets.token_urlsafe(32))
        # The demo admin's password, made once so that every later start can print it again.
        data.setdefault("demo_admin_password", secrets.token_urlsafe(12))
        self.var.mkdir(parents=True, exist_ok=True)
        # Created owner-only from the first byte (not written, then narrowed).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, indent=2))
        path.chmod(0o600)
        return data

    def _environment(self) -> None:
        base = f"http://127.0.0.1:{self.port}"
        local = self._secrets()
        env = os.environ
        if not env.get("LVBAO_REDIS_URL"):
            self.redis = EmbeddedRedis(self.var / "redis")
            env["LVBAO_REDIS_URL"] = self.redis.start()
        env.setdefault("LVBAO_DATABASE_URL", f"sqlite:///{self.var / 'lvbao.db'}")
        env.setdefault("LVBAO_JWKS_URL", f"{base}/api/auth/jwks.json")
        env.setdefault("LVBAO_WECHAT_BASE_URL", f"{base}/mock-wechat")
        env.setdefault("LVBAO_WECHAT_SECRET", local["wechat_secret"])
        env.setdefault("LVBAO_OPERATOR_KEY_SECRET", local["operator_key_secret"])
        env.setdefault("LVBAO_DEMO_ADMIN_PASSWORD", local["demo_admin_password"])
        env.setdefault("LVBAO_LOG_FORMAT", "text")
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(self.var / "metrics"))
        metrics = Path(env["PROMETHEUS_MULTIPROC_DIR"])
        metrics.mkdir(parents=True, exist_ok=True)
        for stale in metrics.glob("*.db"):
            stale.unlink()

    def _lvbao(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "lvbao.cli", *args]

    def _spawn(self, command: list[str]) -> None:
        self.children.append(subprocess.Popen(command))

    def _prepare(self) -> dict[str, Any]:
        subprocess.run(self._lvbao("migrate"), check=True, stdout=subprocess.DEVNULL)
        seeded = subprocess.run(self._lvbao("seed-demo"), check=True, capture_output=True, text=True)
        return json.loads(seeded.stdout.strip().splitlines()[-1])

    def _announce(self, seed: dict[str, Any]) -> None:
        base = f"http://127.0.0.1:{self.port}"
        lines = ["", "绿宝碳汇 is running:"]
        for name in registry.SERVICES:
            prefix = "auth" if name == "gateway" else name
            lines.append(f"  {name:<11} {base}/api/{prefix}/  (health: {base}/api/{prefix}/healthz)")
        lines.append(f"  mock WeChat {base}/mock-wechat/")
        lines.append(f"  mini-program stand-in {base}/miniapp/  (a phone-sized browser window)")
        lines.append(f"  admin console {base}/admin/")
        lines.append(f"  office screen {base}/screen/<institution id>#token=<screen device token>")
        lines.append(f"  station kiosk {base}/station/<station id>#token=<station device token>")
        lines.append(f"  data        {os.environ['LVBAO_DATABASE_URL']}  redis {os.environ['LVBAO_REDIS_URL']}")
        note = "" if seed.get("admin_created") else " (set when the account was made)"
        lines.append(f"  admin       username admin, password {os.environ['LVBAO_DEMO_ADMIN_PASSWORD']}{note}")
        lines.append("Ctrl-C stops everything.")
        print("\n".join(lines), flush=True)

    def stop(self, *_args: object) -> None:
        if self.stopping:
            return
        self.stopping = True
        # SIGINT, as Ctrl-C gives: gunicorn shuts down at once instead of waiting out idle keep-alive
        # connections, and the RQ worker finishes the job at hand.
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self.redis is not None:
            self.redis.stop()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        try:
            self._environment()
            seed = self._prepare()
            self._spawn([
                sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                "--worker-class", "gthread", "--workers", "2", "--threads", "8",
                "--graceful-timeout", "3", "--log-level", "warning",
                "lvbao.embedded:create_combined_app()",
            ])
            self._spawn(self._lvbao("relay"))
            self._spawn(self._lvbao("worker"))
            self._announce(seed)
            while not self.stopping:
                for child in self.children:
                    if child.poll() is not None and not self.stopping:
                        print(f"a child process exited ({' '.join(child.args[2:4])}); stopping", file=sys.stderr)
                        self.stop()
                        return 1
                time.sleep(0.5)
            return 0
        finally:
            self.stop()
