#!/usr/bin/env python3
"""Interop test: the official MCP Python SDK (`mcp` 2.x) against vaultline, in the SDK's default
connect mode (`auto`: probe `server/discover` at the newest modern protocol version, fall back to
`initialize`).

    py_client_test.py --url URL --key KEY                 # Streamable HTTP, bearer key
    py_client_test.py --binary PATH --db PATH             # stdio: spawns `PATH --db DB serve --stdio`
    (both may be given; URL/KEY also come from VAULTLINE_URL / VAULTLINE_KEY)

Prints one line per check and, last, exactly `N passed, M failed`. Exits 1 if any check failed.
The SDK validates structured results against each tool's outputSchema, so a mismatch is a failed check.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

RUN = secrets.token_hex(3)
probe_replies: list[str] = []  # error bodies the server sent to the server/discover probe
passed = 0
failed = 0


def _one_line(s: str, limit: int = 2000) -> str:
    s = " ".join(s.split())
    return s if len(s) <= limit else s[:limit] + "…"


def _err(e: BaseException) -> str:
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(_err(x) for x in e.exceptions)
    return _one_line(f"{type(e).__name__}: {e}")


async def check(name: str, fn: Callable[[], Awaitable[str | None]]) -> bool:
    global passed, failed
    try:
        detail = await fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported as a failed check
        failed += 1
        print(f"FAIL {name}: {_err(e)}", flush=True)
        return False
    passed += 1
    print(f"ok   {name}{f' ({detail})' if detail else ''}", flush=True)
    return True


def fail_now(name: str, detail: str) -> None:
    global failed
    failed += 1
    print(f"FAIL {name}: {_one_line(detail)}", flush=True)


class CheckError(Exception):
    pass


def ensure(cond: Any, msg: str) -> None:
    if not cond:
        raise CheckError(msg)


def text_of(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def call(client: Client, name: str, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Calls a tool; the SDK has already checked structuredContent against the outputSchema."""
    r = await client.call_tool(name, args)
    text = text_of(r)
    ensure(not r.is_error, f"isError: {text}")
    ensure(isinstance(r.structured_content, dict), f"no structuredContent; text: {text}")
    ensure(text, "no text content block")
    return r.structured_content, text


async def scenario(label: str, client: Client, wire: list[str] | None) -> None:
    """Runs the checks on one connected client. `label` prefixes each check name."""
    tag = f"[{label}]"
    await check_connect(tag, client, wire)

    listed: list[str] = []

    async def list_tools() -> str:
        nonlocal listed
        tools = (await client.list_tools()).tools
        listed = [t.name for t in tools]
        for n in ("health", "workflow"):
            ensure(n in listed, f"{n} not in {listed}")
        return ", ".join(listed)

    await check(f"{tag} tools/list has health and workflow", list_tools)

    async def health() -> str:
        sc, text = await call(client, "health", {"action": "status"})
        ensure(sc.get("status") == "ok", f"status={sc.get('status')!r}")
        ensure(isinstance(sc.get("version"), str) and sc["version"], "no version")
        ensure(isinstance(sc.get("store"), dict), "no store object")
        ensure(sc["version"] in text, f"text {text!r} lacks version")
        return f"version {sc['version']}"

    await check(f"{tag} health status", health)

    wid: str | None = None

    async def workflow_create() -> str:
        nonlocal wid
        title = f"py {label} {RUN}"
        sc, text = await call(
            client,
            "workflow",
            {"action": "create", "task_type": "feature", "complexity": "moderate", "title": title, "language": "python"},
        )
        w = sc.get("workflow") or {}
        ensure(isinstance(w.get("id"), str) and w["id"], f"no workflow.id in {sc}")
        ensure(w.get("status") == "open", f"status={w.get('status')!r}")
        ensure(w.get("task_type") == "feature" and w.get("complexity") == "moderate", f"classification {w}")
        ensure(w.get("title") == title, f"title={w.get('title')!r}")
        ensure(w["id"] in text and "open" in text, f"text {text!r} lacks id or status")
        wid = w["id"]
        return wid

    await check(f"{tag} workflow create", workflow_create)

    if wid:

        async def workflow_stage() -> str:
            sc, text = await call(
                client,
                "workflow",
                {"action": "stage", "workflow_id": wid, "stage_name": "review", "model": "py-model", "cost_usd": 0.02},
            )
            st, w = sc.get("stage") or {}, sc.get("workflow") or {}
            ensure(st.get("workflow_id") == wid and st.get("name") == "review", f"stage {st}")
            ensure(w.get("id") == wid and w.get("stages") == 1, f"workflow {w}")
            ensure(wid in text and "review" in text, f"text {text!r} lacks id or stage name")
            return st.get("id", "")

        await check(f"{tag} workflow stage", workflow_stage)

    if "task" not in listed:
        print(f"skipped: task not listed {tag}", flush=True)
    else:
        tid: str | None = None

        async def task_create() -> str:
            nonlocal tid
            title = f"py task {label} {RUN}"
            args: dict[str, Any] = {"action": "create", "title": title, "instruction": "check the Python client"}
            if wid:
                args["workflow_id"] = wid
            sc, text = await call(client, "task", args)
            t = sc.get("task") or {}
            ensure(isinstance(t.get("id"), str) and t["id"], f"no task.id in {sc}")
            ensure(t.get("status") == "open", f"status={t.get('status')!r}")
            ensure(t.get("title") == title, f"title={t.get('title')!r}")
            ensure(t["id"] in text, f"text {text!r} lacks id")
            tid = t["id"]
            return tid

        await check(f"{tag} task create", task_create)

        if tid and wid:

            async def task_in_workflow() -> str:
                sc, _ = await call(client, "workflow", {"action": "get", "workflow_id": wid})
                ids = [t.get("id") for t in sc.get("tasks") or []]
                ensure(tid in ids, f"task {tid} not in workflow tasks {ids}")
                return f"{len(ids)} task(s)"

            await check(f"{tag} workflow get lists the task", task_in_workflow)

    if "checkpoint" not in listed:
        print(f"skipped: checkpoint not listed {tag}", flush=True)
    else:
        project = f"py-{label}-{RUN}"
        objective = f"Verify the Python SDK client over {label} {RUN}"

        async def checkpoint_save() -> str:
            sc, text = await call(
                client,
                "checkpoint",
                {
                    "action": "save",
                    "agent": "py-client-test",
                    "project": project,
                    "objective": objective,
                    "blockers": ["none so far"],
                    "recent_actions": ["created a workflow", "created a task"],
                },
            )
            cp = sc.get("checkpoint") or {}
            ensure(isinstance(cp.get("id"), str) and cp["id"], f"no checkpoint.id in {sc}")
            ensure(isinstance(cp.get("hash"), str) and cp["hash"], "no checkpoint.hash")
            ensure(sc.get("created") is True, f"created={sc.get('created')!r}")
            ensure(cp["id"] in text or cp["hash"][:8] in text, f"text {text!r} names neither id nor hash")
            return cp["id"]

        await check(f"{tag} checkpoint save", checkpoint_save)

        async def checkpoint_handoff() -> str:
            sc, text = await call(client, "checkpoint", {"action": "handoff", "agent": "py-client-test", "project": project})
            h = sc.get("handoff")
            ensure(isinstance(h, str), f"no handoff string in {str(sc)[:300]}")
            ensure(h.startswith("# Recovery Checkpoint"), f"handoff starts {h[:40]!r}")
            ensure(objective in h, "handoff lacks the saved objective")
            ensure(text == h, "text content differs from structuredContent.handoff")
            return f"{len(h.encode())} bytes of Markdown"

        await check(f"{tag} checkpoint handoff", checkpoint_handoff)


async def check_connect(tag: str, client: Client, wire: list[str] | None) -> None:
    async def connected() -> str:
        info = client.server_info
        detail = f"server {info.name if info else '?'} {info.version if info else ''}, protocol {client.protocol_version}"
        if wire is not None:
            detail += f"; wire: {' → '.join(wire[:3])}"
            if probe_replies:
                detail += f"; discover reply: {probe_replies[0]}"
            ensure(wire and wire[0].startswith("server/discover"), f"auto mode did not probe server/discover first: {wire}")
        return detail

    await check(f"{tag} connect (mode=auto)", connected)


def recorder(wire: list[str]) -> tuple[Callable[..., Awaitable[None]], Callable[..., Awaitable[None]]]:
    """httpx2 hooks noting each POSTed JSON-RPC method (or GET/DELETE) and the HTTP status."""
    pending: dict[int, str] = {}

    async def on_request(request: httpx2.Request) -> None:
        if request.method == "POST":
            try:
                body = json.loads(request.content)
                pending[id(request)] = body.get("method", "response") if isinstance(body, dict) else "batch"
            except Exception:  # noqa: BLE001
                pending[id(request)] = "?"
        elif request.method in ("GET", "DELETE"):
            pending[id(request)] = request.method

    async def on_response(response: httpx2.Response) -> None:
        m = pending.pop(id(response.request), None)
        if m is None:
            return
        wire.append(f"{m} {response.status_code}")
        if m == "server/discover" and response.status_code >= 400:
            # Show why the probe was refused (read only error bodies: an SSE body would block here).
            await response.aread()
            probe_replies.append(_one_line(f"{response.status_code} {response.text}", 300))

    return on_request, on_response


async def run_http(url: str, key: str) -> None:
    wire: list[str] = []
    on_req, on_resp = recorder(wire)
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx2.Timeout(30.0, read=120.0),
        event_hooks={"request": [on_req], "response": [on_resp]},
    )
    try:
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            await scenario("http", client, wire)
    except Exception as e:  # noqa: BLE001
        fail_now("[http] session", f"{_err(e)}; wire: {wire}")
    if deletes := [w for w in wire if w.startswith("DELETE")]:
        print(f"info [http] session end: {', '.join(deletes)} (this SDK expects 200/204/405)", flush=True)

    for label, hdrs in (("wrong key", {"Authorization": f"Bearer vl_wrong_{RUN}"}), ("missing key", {})):

        async def refused(hdrs: dict[str, str] = hdrs) -> str:
            # The SDK turns a non-JSON-RPC 401 into a generic MCPError, so the HTTP statuses are
            # taken from the wire: every POST must have been answered 401.
            bad_wire: list[str] = []
            on_req, on_resp = recorder(bad_wire)
            bad = httpx2.AsyncClient(
                headers=hdrs, timeout=httpx2.Timeout(15.0), event_hooks={"request": [on_req], "response": [on_resp]}
            )
            try:
                with anyio.fail_after(30):
                    async with bad, Client(streamable_http_client(url, http_client=bad)) as c:
                        await c.list_tools()
            except Exception as e:  # noqa: BLE001
                ensure(bad_wire and all(w.endswith(" 401") for w in bad_wire), f"{_err(e)}; wire: {bad_wire}")
                return f"{_err(e)[:60]}; wire: {' → '.join(bad_wire)}"
            raise CheckError(f"connected and listed tools without a valid key; wire: {bad_wire}")

        await check(f"[http] {label} is refused", refused)


async def run_stdio(binary: str, db: str, errlog_path: str) -> None:
    params = StdioServerParameters(command=binary, args=["--db", db, "serve", "--stdio"])
    try:
        with open(errlog_path, "a") as errlog:
            # stdio_client(params, errlog=...) only redirects the server's stderr (its logs) to a file;
            # it is what Client(params) uses internally.
            async with Client(stdio_client(params, errlog=errlog)) as client:
                await scenario("stdio", client, None)
    except Exception as e:  # noqa: BLE001
        fail_now("[stdio] session", f"{_err(e)} (server stderr: {errlog_path})")


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("VAULTLINE_URL"))
    p.add_argument("--key", default=os.environ.get("VAULTLINE_KEY"))
    p.add_argument("--binary", help="vaultline binary, for the stdio run")
    p.add_argument("--db", help="database file for the stdio run")
    p.add_argument("--stdio-log", help="file for the stdio server's stderr (default: DB + '.stderr.log')")
    a = p.parse_args()
    if not a.url and not a.binary:
        p.error("give --url/--key (HTTP) and/or --binary/--db (stdio)")
    if a.url:
        if not a.key:
            p.error("--url needs --key (or VAULTLINE_KEY)")
        await run_http(a.url, a.key)
    if a.binary:
        if not a.db:
            p.error("--binary needs --db")
        await run_stdio(a.binary, a.db, a.stdio_log or a.db + ".stderr.log")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
