"""End to end through the local hub: the official Python `mcp` SDK as two
hosts (alice and bob), each spawning the built `aicp-bridge serve` over stdio,
relaying to the built `aicp-bridge hub`. Exercises every tool, resource and
prompt; two users exchange context and work; a bad token is refused at the
upgrade and the host is told. Run twice by local_hub_sdk.rs: phase `main`,
then phase `after-restart` against the restarted hub (state must be intact).
Prints one line per check; exits non-zero on the first failure.

Usage: hub_e2e.py PHASE BRIDGE HUB_URL TOKEN_ALICE TOKEN_BOB BAD_TOKEN
"""

import json
import sys
from contextlib import AsyncExitStack

import anyio
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


async def open_session(stack, bridge, url, token, capabilities, on_update=None):
    args = ["serve", "--hub", url, "--log-level", "debug"]
    if capabilities:
        args += ["--capabilities", capabilities]
    params = StdioServerParameters(command=bridge, args=args, env={"AICP_TOKEN": token, "AICP_HUB_URL": ""})
    read, write = await stack.enter_async_context(stdio_client(params))

    async def handler(message):
        if on_update is not None and isinstance(message, types.ResourceUpdatedNotification):
            on_update(str(message.params.uri))

    session = await stack.enter_async_context(ClientSession(read, write, message_handler=handler))
    init = await session.initialize()
    return session, init


async def wait_for(cond, what, seconds=5):
    with anyio.fail_after(seconds):
        while not cond():
            await anyio.sleep(0.02)
    check(True, what)


async def tool(session, name, args):
    r = await session.call_tool(name, args)
    return r, r.structured_content or {}


async def main_phase(bridge, url, token_alice, token_bob, bad_token):
    bob_updates: list[str] = []
    async with AsyncExitStack() as stack:
        alice, init = await open_session(stack, bridge, url, token_alice, "writing,analysis")
        check(init.server_info.name == "aicp-bridge-hub", "alice's initialize reaches the local hub")
        check("`alice`" in (init.instructions or ""), "the hub knows alice by her token's subject")
        print(f"negotiated protocol version: {init.protocol_version}", flush=True)
        bob, _ = await open_session(stack, bridge, url, token_bob, "rust,code-review", bob_updates.append)

        await alice.send_ping()
        check(True, "ping")

        names = {t.name for t in (await alice.list_tools()).tools}
        expected = {"whoami", "route_to_agent", "share_context", "orchestrate_collaboration", "list_agents", "send_message", "read_inbox"}
        check(expected <= names, f"tools/list has every tool {sorted(names)}")

        r, sc = await tool(bob, "whoami", {})
        check(sc["identity"] == "bob" and sc["capabilities"] == ["rust", "code-review"], "whoami tells bob who he is on the hub")

        r, sc = await tool(alice, "list_agents", {})
        agents = {a["identity"]: a for a in sc["agents"]}
        check(set(agents) == {"alice", "bob"}, "list_agents shows both users")
        check(agents["bob"]["capabilities"] == ["rust", "code-review"], "bob's --capabilities reached the hub")

        res = await bob.list_resources()
        uris = {str(x.uri) for x in res.resources}
        check({"aicp://shared-state", "aicp://inbox/bob"} <= uris, f"resources/list {sorted(uris)}")
        tpl = await bob.list_resource_templates()
        check({t.uri_template for t in tpl.resource_templates} == {"aicp://context/{key}", "aicp://inbox/{agent}"}, "resources/templates/list")
        await bob.subscribe_resource("aicp://shared-state")
        await bob.subscribe_resource("aicp://inbox/bob")
        check(True, "resources/subscribe (shared state and own inbox)")

        plan = {"version": "0.2", "blockers": ["docs", "review"]}
        r, sc = await tool(alice, "share_context", {"context_key": "release-plan", "context_value": plan})
        check(sc.get("status") == "success" and not r.is_error, "share_context")
        await wait_for(lambda: "aicp://shared-state" in bob_updates, "bob is notified that the shared state changed")

        body = await bob.read_resource("aicp://shared-state")
        check(json.loads(body.contents[0].text) == {"release-plan": plan}, "bob reads alice's context: values are JSON, not JSON-in-a-string")
        body = await bob.read_resource("aicp://context/release-plan")
        check(json.loads(body.contents[0].text) == plan, "per-key resource through the template")

        r, sc = await tool(alice, "route_to_agent", {"message": "Please review the Rust code in session.rs", "context": {"file": "session.rs"}})
        check(sc.get("status") == "routed" and sc.get("agent") == "bob", f"route_to_agent delivers to bob: {sc.get('suggestion')}")
        check(all(k in sc for k in ("status", "agent", "delivered", "message_id", "agent_capabilities", "target_capabilities", "suggestion", "timestamp")), "route_to_agent keeps the original hub's field names (intent is gone: routing no longer classifies)")
        routed_id = sc["message_id"]
        await wait_for(lambda: "aicp://inbox/bob" in bob_updates, "bob is notified of a new message in his inbox")

        r, sc = await tool(bob, "read_inbox", {"wait_ms": 2000})
        msgs = sc["messages"]
        check(msgs and msgs[0]["id"] == routed_id and msgs[0]["from"] == "alice", "bob's read_inbox has alice's routed work")
        env = msgs[0]["aixp"]
        # The bridge starts each call's envelope (hops 0, origin: that bridge instance); the hub adds the hop.
        check(env["hops"] == 1 and env["origin"].startswith("aicp-bridge-") and env["id"] == routed_id,
              f"the message carries the AIXP envelope continued from alice's bridge: {env}")
        check(json.loads(r.content[0].text) == sc, "read_inbox text block is the same JSON")
        check(sc["marked_read"] and msgs[0]["read_at"] and msgs[0]["sent_at"].endswith("Z"), "read_inbox marks what it returns as read (ISO 8601 times)")

        r, sc = await tool(bob, "send_message", {"to": "alice", "text": "Reviewed: ship it", "reply_to": routed_id})
        check(sc.get("status") == "delivered", "bob answers with send_message (reply_to)")
        r, sc = await tool(alice, "read_inbox", {"wait_ms": 2000})
        m = sc["messages"][0]
        check(m["text"] == "Reviewed: ship it" and m["reply_to"] == routed_id and m["aixp"]["hops"] == 1 and m["aixp"].get("turns") == 1, "alice reads bob's reply: a turn of their conversation, not a hop")

        r, sc = await tool(bob, "share_context", {"context_key": "review", "context_value": {"verdict": "approve"}})
        body = await alice.read_resource("aicp://shared-state")
        check(json.loads(body.contents[0].text)["review"] == {"verdict": "approve"}, "alice sees bob's shared context")

        r, sc = await tool(alice, "orchestrate_collaboration", {"task": "1. write the docs\n2. review the store\n3. run the benchmark", "agents": ["bob"]})
        check(len(sc["subtasks"]) == 3 and all(s["agent"] == "bob" and s["delivered"] for s in sc["subtasks"]), "orchestrate_collaboration assigns and delivers every subtask")
        body = await bob.read_resource("aicp://inbox/bob")
        check(len(json.loads(body.contents[0].text)["messages"]) == 3, "the inbox resource shows unread messages (without marking them)")
        r, sc2 = await tool(bob, "read_inbox", {})
        check(len(sc2["messages"]) == 3 and sc["plan_id"] in sc2["messages"][0]["text"], "bob receives the three subtasks, and only them")
        body = await bob.read_resource("aicp://inbox/bob")
        check(json.loads(body.contents[0].text)["messages"] == [], "read_inbox marked them read")

        prompts = {p.name: p for p in (await alice.list_prompts()).prompts}
        check(set(prompts) == {"analyze_task", "collaboration_request", "check_requests", "collect_results"}, "prompts/list")
        check([a.name for a in prompts["analyze_task"].arguments] == ["task", "context"], "analyze_task declares its arguments")
        p = await alice.get_prompt("analyze_task", {"task": "ship 0.2"})
        check(p.messages[0].content.type == "text" and "Task: ship 0.2" in p.messages[0].content.text, "prompts/get analyze_task substitutes")
        p = await alice.get_prompt("collaboration_request", {"task": "review", "partner": "bob"})
        check("to bob" in p.messages[0].content.text, "prompts/get collaboration_request substitutes")
        p = await alice.get_prompt("check_requests", {})
        check("read_inbox" in p.messages[0].content.text and "reply_to" in p.messages[0].content.text, "prompts/get check_requests")

        r, sc = await tool(alice, "send_message", {"to": "bob", "text": "for after the restart"})
        check(sc.get("status") == "delivered", "a message left unread for after the restart")

    async with AsyncExitStack() as stack:
        _, init = await open_session(stack, bridge, url, bad_token, "")
        check("the hub refused the credentials (HTTP 401)" in (init.instructions or ""), "a bad token is refused at the upgrade, and the host is told why")


async def after_restart(bridge, url, token_alice, token_bob, bad_token):
    async with AsyncExitStack() as stack:
        bob, _ = await open_session(stack, bridge, url, token_bob, "rust")
        body = await bob.read_resource("aicp://shared-state")
        state = json.loads(body.contents[0].text)
        check(state["release-plan"]["version"] == "0.2" and state["review"] == {"verdict": "approve"}, "shared state intact after the restart")
        r, sc = await tool(bob, "read_inbox", {})
        check(any(m["text"] == "for after the restart" for m in sc["messages"]), "unread message intact after the restart")


if __name__ == "__main__":
    phase, rest = sys.argv[1], sys.argv[2:]
    anyio.run(main_phase if phase == "main" else after_restart, *rest)
    print(f"hub e2e ({phase}): all checks passed", flush=True)
