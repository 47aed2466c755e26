"""A real MCP host for the integration tests: the official Python `mcp` SDK
spawns the built `aicp-bridge serve` over stdio and drives every relayed
capability against the test hub. Exits non-zero (with the failing check on
stderr) if any check fails; prints one line per check passed.

Usage: sdk_host.py BRIDGE_BINARY HUB_URL
"""

import json
import sys

import anyio
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


async def main(bridge: str, hub_url: str) -> None:
    params = StdioServerParameters(
        command=bridge,
        args=["serve", "--hub", hub_url, "--log-level", "debug"],
        env={"AICP_HUB_URL": "", "AICP_TOKEN": ""},
    )
    updates: list[str] = []

    async def sampling(context, p: types.CreateMessageRequestParams):
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="hi from the sdk host"),
            model="test-model",
        )

    async def roots(context):
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/project", name="project")])

    async def on_message(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    async with stdio_client(params) as (read, write):
        async with ClientSession(
            read, write, sampling_callback=sampling, list_roots_callback=roots, message_handler=on_message
        ) as session:
            init = await session.initialize()
            check(init.server_info.name == "test-hub", "initialize reaches the hub (serverInfo test-hub)")
            print(f"negotiated protocol version: {init.protocol_version}", flush=True)

            await session.send_ping()
            check(True, "ping answered")

            tools = await session.list_tools()
            names = {t.name for t in tools.tools}
            check({"echo", "slow", "sample", "roots", "fail"} <= names, f"tools/list relays the hub's tools {sorted(names)}")

            r = await session.call_tool("echo", {"text": "hello"})
            check(r.content[0].text == "hello" and not r.is_error, "tools/call echo")
            check(r.structured_content == {"echo": {"text": "hello"}}, "structuredContent relayed")

            r = await session.call_tool("fail", {})
            check(r.is_error, "a tool error stays a tool result with isError")

            progress: list[float] = []

            async def on_progress(value, total, message):
                progress.append(value)

            r = await session.call_tool("slow", {"ms": 200, "steps": 4}, progress_callback=on_progress)
            check(r.content[0].text == "done", "slow tool completes")
            check(progress == [1, 2, 3, 4], f"progress arrives in order before the response: {progress}")

            r = await session.call_tool("sample", {})
            check("hi from the sdk host" in r.content[0].text, "hub -> host sampling/createMessage and its reply")

            r = await session.call_tool("roots", {})
            check("file:///tmp/project" in r.content[0].text, "hub -> host roots/list and its reply")

            with anyio.move_on_after(0.5) as scope:
                await session.call_tool("hang", {})
            check(scope.cancelled_caught, "a hanging call is cancelled by the host")
            r = await session.call_tool("echo", {"text": "after cancel"})
            check(r.content[0].text == "after cancel", "the session keeps working after a cancel")

            res = await session.list_resources()
            check(any(str(x.uri) == "aicp://shared-state" for x in res.resources), "resources/list")
            tpl = await session.list_resource_templates()
            check(tpl.resource_templates[0].uri_template == "aicp://context/{key}", "resources/templates/list")
            body = await session.read_resource("aicp://shared-state")
            check(json.loads(body.contents[0].text) == {"k": 1}, "resources/read")
            await session.subscribe_resource("aicp://shared-state")
            with anyio.fail_after(5):
                while not updates:
                    await anyio.sleep(0.02)
            check(updates == ["aicp://shared-state"], "resources/subscribe then notifications/resources/updated")

            prompts = await session.list_prompts()
            check(prompts.prompts[0].name == "analyze_task", "prompts/list")
            p = await session.get_prompt("analyze_task", {"task": "ship it"})
            check(p.messages[0].content.text == "Analyze: ship it", "prompts/get")

            c = await session.complete(types.PromptReference(type="ref/prompt", name="analyze_task"), {"name": "task", "value": "al"})
            check(c.completion.values == ["alpha", "alpine"], "completion/complete")

            await session.set_logging_level("info")
            check(True, "logging/setLevel")
    print("sdk host: all checks passed", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
