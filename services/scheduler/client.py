"""A small client of the admin API, for the CLI (``crmsync jobs / trigger / runs``)."""

from __future__ import annotations

import getpass
import socket
from types import TracebackType
from typing import Any

import aiohttp


class AdminApiError(Exception):
    """The admin API answered with an error (its problem document), or not at all.

    Attributes:
        status: the HTTP status, None when unreachable.
        problem: the problem+json body, if there was one.
    """

    def __init__(self, message: str, status: int | None = None, problem: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem if isinstance(problem, dict) else {}

    def describe(self) -> str:
        """One line, then one per field error."""
        lines = [str(self)]
        for err in self.problem.get("errors") or []:
            where = err.get("pointer") or err.get("parameter") or ""
            lines.append(f"  {where}: {err.get('detail', '')}")
        return "\n".join(lines)


def who_am_i() -> str:
    """``user@host``, sent as ``X-Triggered-By``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class AdminClient:
    """``async with AdminClient(url, token) as api: await api.jobs()``.

    Args:
        url: the scheduler's base URL (``http://127.0.0.1:8082``).
        token: the admin bearer token.
        timeout_s: per request, in seconds.
    """

    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "X-Triggered-By": who_am_i()}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AdminClient:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self._session is not None, "use AdminClient in `async with`"
        try:
            async with self._session.request(method, self.url + path, **kwargs) as resp:
                body = await resp.json(content_type=None) if await resp.read() else None
                if resp.status >= 400:
                    title = body.get("title", resp.reason) if isinstance(body, dict) else ""
                    detail = body.get("detail", "") if isinstance(body, dict) else ""
                    message = f"{resp.status} {title}" + (f": {detail}" if detail else "")
                    raise AdminApiError(message, resp.status, body)
                return body
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise AdminApiError(f"cannot reach the admin API at {self.url} ({exc})") from exc

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any admin API route: the JSON body; raises :class:`AdminApiError` on >= 400."""
        return await self._call(method, path, **kwargs)

    async def jobs(self) -> list[dict[str, Any]]:
        body = await self._call("GET", "/v1/jobs")
        return list(body["jobs"])

    async def runs(self, job: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        path = f"/v1/jobs/{job}/runs" if job else "/v1/runs"
        body = await self._call("GET", path, params={"limit": str(limit)})
        return list(body["runs"])

    async def run(self, run_id: int) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("GET", f"/v1/runs/{run_id}")
        return body

    async def trigger(self, job: str, params: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("POST", f"/v1/jobs/{job}/runs", json=params)
        return body
