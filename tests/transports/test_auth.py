"""API keys, the origin rule and new-session rate limits on a real server: /ws, /api/offer,
/api/config and the mounted dashboard refuse with 401/4401, 403/4403 and 429/4429, and let the
right clients in (docs/protocol.md)."""

import asyncio
import json
import logging
import urllib.error
import urllib.request

import pytest
import websockets
from loguru import logger

from tests.browser import chromium, mic_file
from tests.conftest import RunningServer, make_settings
from tests.ws_client import expect_close, next_event, start, wait_for_no_sessions
from voxline.auth import KeyStore
from voxline.logs import _InterceptHandler

LISTED_ORIGIN = "https://app.example.org"
DASHBOARD_TOKEN = "dash-board-token"
# An offer that parses as JSON and reaches SDP validation: proof that access was granted.
BAD_SDP_OFFER = {"sdp": "v=0 not an sdp", "type": "offer"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A keys file with a live key, a second live key and a revoked one."""
    store = KeyStore(tmp_path_factory.mktemp("keys") / "keys.json")
    live = store.create("live")[1]
    other = store.create("other")[1]
    operator = store.create("ops", role="operator")[1]
    revoked_record, revoked = store.create("revoked")
    store.revoke(revoked_record.id)
    return {"store": store, "live": live, "other": other, "revoked": revoked,
            "operator": operator}


@pytest.fixture(scope="module")
async def keyed(models, keys):
    settings = make_settings(
        auth={"enabled": True, "keys_file": keys["store"].path},
        server={"allowed_origins": [LISTED_ORIGIN]},
        limits={"auth_failures_per_minute_per_ip": 0},  # the tests here fail keys on purpose
        dashboard={"token": DASHBOARD_TOKEN},
        webrtc={"ice_host_addresses": ["127.0.0.1"]},
    )
    server = await RunningServer(settings, models).start()
    yield server
    await server.stop()


def _request(method: str, url: str, body: dict | None = None,
             headers: dict | None = None) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            raw, status, got = response.read(), response.status, response.headers
    except urllib.error.HTTPError as e:
        raw, status, got = e.read(), e.code, e.headers
    try:
        return status, {k.lower(): v for k, v in got.items()}, json.loads(raw)
    except ValueError:
        return status, {k.lower(): v for k, v in got.items()}, {}


async def http(method: str, url: str, body: dict | None = None, **headers) -> tuple[int, dict]:
    status, _, answer = await asyncio.to_thread(_request, method, url, body, headers)
    return status, answer


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


async def refused_ws(url: str, code: int, error: str | None, **kwargs) -> str:
    """Connect, expect an `error` (if named) and a close with `code`; return the close reason."""
    async with websockets.connect(url, open_timeout=10, **kwargs) as ws:
        if error:
            event = await next_event(ws)
            assert event["type"] == "error" and event["code"] == error, event
            assert "Traceback" not in event["message"]
        return (await expect_close(ws, code)).reason


# --- API keys -----------------------------------------------------------------------------------

@pytest.mark.parametrize("credential", ["none", "wrong", "revoked", "malformed"])
async def test_ws_without_a_valid_key_is_closed_with_4401(keyed, keys, credential):
    token = {"none": None, "wrong": keys["live"][:-4] + "abcd", "revoked": keys["revoked"],
             "malformed": "hunter2"}[credential]
    url = keyed.ws_url + (f"?token={token}" if token else "")
    reason = await refused_ws(url, 4401, "unauthorized")
    assert "API key" in reason


@pytest.mark.parametrize("how", ["header", "query"])
async def test_ws_with_a_valid_key_gets_a_session(keyed, keys, how):
    if how == "header":
        connect = websockets.connect(keyed.ws_url, additional_headers=bearer(keys["live"]))
    else:
        connect = websockets.connect(f"{keyed.ws_url}?token={keys['live']}")
    async with connect as ws:
        ready = await start(ws)
    assert len(ready["session_id"]) == 12
    await wait_for_no_sessions(keyed)


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/offer", BAD_SDP_OFFER),
    ("PATCH", "/api/offer", {"pc_id": "nobody", "candidates": []}),
    ("GET", "/api/config", None),
])
async def test_http_endpoints_refuse_without_a_valid_key(keyed, keys, method, path, body):
    for headers in ({}, bearer(keys["revoked"]), bearer("vxl_live_nope"),
                    {"Authorization": f"Basic {keys['live']}"}):
        status, answer = await http(method, keyed.http_url + path, body, **headers)
        assert status == 401, (headers, answer)
        assert answer["error"] == "unauthorized", answer
        assert "?token=" in answer["message"] and keys["live"] not in answer["message"]


async def test_http_endpoints_let_a_valid_key_in(keyed, keys):
    url = keyed.http_url
    status, answer = await http("POST", url + "/api/offer", BAD_SDP_OFFER, **bearer(keys["live"]))
    assert (status, answer["error"]) == (400, "bad_sdp"), answer  # past access, into validation
    status, answer = await http("POST", f"{url}/api/offer?token={keys['live']}", BAD_SDP_OFFER)
    assert (status, answer["error"]) == (400, "bad_sdp"), answer
    status, answer = await http("PATCH", url + "/api/offer", {"pc_id": "nobody", "candidates": []},
                                **bearer(keys["other"]))
    assert (status, answer["error"]) == (404, "unknown_peer"), answer
    status, answer = await http("GET", url + "/api/config", **bearer(keys["live"]))
    assert (status, answer) == (200, {"iceServers": []})
    assert (await http("GET", url + "/", None))[0] == 200  # the page itself holds no secret


async def test_dashboard_takes_an_operator_key_or_its_own_token_not_a_client_key(keyed, keys):
    """A client key (a kiosk's, a web page's) talks; the dashboard shows every conversation and
    sends commands, so it needs an operator's credential."""
    feed = keyed.http_url.replace("http", "ws") + "/dashboard/ws"
    for token in (None, keys["revoked"], "wrong"):
        url = feed + (f"?token={token}" if token else "")
        await refused_ws(url, 4401, None)
    for token in (keys["live"], keys["other"]):
        assert await refused_ws(f"{feed}?token={token}", 4403, None) == \
            "operator credential required"
    for token in (keys["operator"], DASHBOARD_TOKEN):
        async with websockets.connect(f"{feed}?token={token}") as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
    # An operator key is still a key: it may talk too.
    async with websockets.connect(f"{keyed.ws_url}?token={keys['operator']}") as ws:
        await start(ws)
    await wait_for_no_sessions(keyed)


async def test_failed_credentials_from_one_address_are_refused_before_any_check(models, keys):
    """Each wrong key used to cost a scrypt (~50 ms of CPU), without limit."""
    settings = make_settings(auth={"enabled": True, "keys_file": keys["store"].path},
                             limits={"auth_failures_per_minute_per_ip": 3})
    server = await RunningServer(settings, models).start()
    try:
        for _ in range(3):
            await refused_ws(f"{server.ws_url}?token={keys['live'][:-4]}abcd", 4401,
                             "unauthorized")
        # Now even the right key is refused from this address, for a while...
        reason = await refused_ws(f"{server.ws_url}?token={keys['live']}", 4429,
                                  "too_many_failures")
        assert "invalid credentials" in reason
        status, headers, answer = await asyncio.to_thread(
            _request, "POST", server.http_url + "/api/offer", BAD_SDP_OFFER, bearer(keys["live"]))
        assert (status, answer["error"]) == (429, "too_many_failures")
        assert int(headers["retry-after"]) >= 1
        # ...but not from another one.
        async with websockets.connect(f"{server.ws_url}?token={keys['live']}",
                                      local_addr=("127.0.0.2", 0)) as ws:
            await start(ws)
        await wait_for_no_sessions(server)
    finally:
        await server.stop()


async def test_a_client_refused_in_a_loop_does_not_flood_the_log(keyed):
    """Each refusal was an INFO line, and every INFO line goes to every dashboard."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{level} {message}")
    try:
        for _ in range(20):
            await refused_ws(keyed.ws_url, 4401, "unauthorized", local_addr=("127.0.0.3", 0))
    finally:
        logger.remove(sink)
    refusals = [line for line in lines if "Refused /ws from 127.0.0.3" in line]
    assert len(refusals) == 20
    assert sum(line.startswith("INFO") for line in refusals) == 6


async def test_a_key_revoked_while_the_server_runs_is_refused_at_once(keyed, keys):
    cli = KeyStore(keys["store"].path)  # as `voxline keys` would, in another process
    record, key = cli.create("temporary")
    async with websockets.connect(f"{keyed.ws_url}?token={key}") as ws:
        await start(ws)
    cli.revoke(record.id)
    await refused_ws(f"{keyed.ws_url}?token={key}", 4401, "unauthorized")
    status, _ = await http("POST", keyed.http_url + "/api/offer", BAD_SDP_OFFER, **bearer(key))
    assert status == 401
    await wait_for_no_sessions(keyed)


async def test_keys_never_reach_the_logs(keyed, keys):
    """uvicorn logs each WebSocket's path with its query (`/ws?token=...`) at INFO: the handler
    that routes it into loguru hides the key, as loguru's own patcher does for our messages."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="TRACE", format="{message}")
    uvicorn_log = logging.getLogger("uvicorn.error")
    saved = uvicorn_log.handlers, uvicorn_log.level, uvicorn_log.propagate
    uvicorn_log.handlers, uvicorn_log.propagate = [_InterceptHandler()], False
    uvicorn_log.setLevel(logging.INFO)  # setLevel, not .level: it clears the enabled cache
    try:
        async with websockets.connect(f"{keyed.ws_url}?token={keys['live']}") as ws:
            await start(ws)
        await refused_ws(f"{keyed.ws_url}?token={keys['revoked']}", 4401, "unauthorized")
        await http("POST", keyed.http_url + "/api/offer", BAD_SDP_OFFER, **bearer(keys["other"]))
        await wait_for_no_sessions(keyed)
    finally:
        uvicorn_log.handlers, _, uvicorn_log.propagate = saved
        uvicorn_log.setLevel(saved[1])
        logger.remove(sink)
    text = "\n".join(lines)
    assert "/ws?token=***" in text, text[-2000:]
    for key in (keys["live"], keys["revoked"], keys["other"]):
        assert key[len("vxl_live_") + 8:] not in text


async def test_talk_page_with_a_key_in_its_url_gets_a_session(keyed, keys, tmp_path):
    """The page passes its own ?token= on to /api/config and /api/offer; without one it says
    what is missing instead of failing silently."""
    mic = mic_file(tmp_path / "mic.wav", (None, 5.0))
    async with chromium(mic) as browser:
        page = await browser.new_page()
        await page.goto(keyed.http_url + "/")
        await page.click("#talk")
        await page.wait_for_selector("#error:not([hidden])", timeout=10000)
        refusal = await page.locator("#error").inner_text()
        await page.goto(f"{keyed.http_url}/?token={keys['live']}")
        assert "token" not in page.url  # kept in the tab, out of the address bar
        await page.click("#talk")
        await page.wait_for_function(
            "window.voxline.events.some(e => e.type === 'ready')", timeout=30000)
        await page.click("#hangup")
    assert "API key is required" in refusal and "?token=" in refusal, refusal
    await wait_for_no_sessions(keyed)


# --- origins ------------------------------------------------------------------------------------

async def test_another_sites_page_is_refused_with_4403_and_403(server):
    reason = await refused_ws(server.ws_url, 4403, "origin_not_allowed",
                              origin="http://evil.example")
    assert reason == "origin not allowed"
    status, answer = await http("POST", server.http_url + "/api/offer", BAD_SDP_OFFER,
                                Origin="http://evil.example")
    assert (status, answer["error"]) == (403, "origin_not_allowed")
    assert "server.allowed_origins" in answer["message"]
    await refused_ws(server.http_url.replace("http", "ws") + "/dashboard/ws", 4403, None,
                     origin="http://evil.example")


@pytest.mark.parametrize("origin", ["same", "none"])
async def test_same_origin_and_non_browser_clients_are_let_in(server, origin):
    kwargs = {"origin": server.http_url} if origin == "same" else {}
    async with websockets.connect(server.ws_url, **kwargs) as ws:
        await start(ws)
    headers = {"Origin": server.http_url} if origin == "same" else {}
    status, answer = await http("POST", server.http_url + "/api/offer", BAD_SDP_OFFER, **headers)
    assert (status, answer["error"]) == (400, "bad_sdp")
    await wait_for_no_sessions(server)


async def test_a_listed_origin_is_let_in(keyed, keys):
    async with websockets.connect(f"{keyed.ws_url}?token={keys['live']}",
                                  origin=LISTED_ORIGIN) as ws:
        await start(ws)
    status, answer = await http("POST", keyed.http_url + "/api/offer", BAD_SDP_OFFER,
                                Origin=LISTED_ORIGIN, **bearer(keys["live"]))
    assert (status, answer["error"]) == (400, "bad_sdp")
    await wait_for_no_sessions(keyed)


# --- DNS rebinding: the Host header ------------------------------------------------------------

REBOUND = "evil.example"


async def test_a_rebound_host_name_is_refused_everywhere(server):
    """A page on evil.example whose name now resolves to 127.0.0.1 sends Host and Origin
    evil.example:PORT: same-origin by the origin rule, but not a name this server answers."""
    port = server.http_url.rsplit(":", 1)[1]
    rebound = f"{REBOUND}:{port}"
    for method, path, body in (("GET", "/dashboard/", None), ("GET", "/api/config", None),
                               ("POST", "/api/offer", BAD_SDP_OFFER), ("GET", "/", None)):
        status, _ = await http(method, server.http_url + path, body, Host=rebound,
                               Origin=f"http://{rebound}")
        assert status == 400, (path, status)
    for path in ("/ws", "/dashboard/ws"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"ws://{rebound}{path}", host="127.0.0.1", port=int(port),
                                     origin=f"http://{rebound}", open_timeout=10)
        assert refused.value.response.status_code == 400, path
    for name in ("localhost", "127.0.0.1"):  # the loopback names still work
        status, _ = await http("GET", server.http_url + "/api/config", Host=f"{name}:{port}")
        assert status == 200, name


async def test_a_listed_host_name_is_answered(models):
    server = await RunningServer(make_settings(server={"allowed_hosts": ["*.example.org"]}),
                                 models).start()
    try:
        port = server.http_url.rsplit(":", 1)[1]
        status, _ = await http("GET", server.http_url + "/api/config",
                               Host=f"voice.example.org:{port}")
        assert status == 200
        status, _ = await http("GET", server.http_url + "/api/config", Host=f"{REBOUND}:{port}")
        assert status == 400
    finally:
        await server.stop()


# --- rate limits --------------------------------------------------------------------------------

async def test_new_sessions_over_the_rate_are_refused_with_4429_and_429(models, keys):
    """3 a minute per address, 2 per key: key A's third session is refused (its key), key B
    still gets one, then the address is spent; another address is still answered normally."""
    settings = make_settings(auth={"enabled": True, "keys_file": keys["store"].path},
                             limits={"sessions_per_minute_per_ip": 3,
                                     "sessions_per_minute_per_key": 2})
    server = await RunningServer(settings, models).start()
    a, b = f"{server.ws_url}?token={keys['live']}", f"{server.ws_url}?token={keys['other']}"
    try:
        for _ in range(2):
            async with websockets.connect(a) as ws:
                await start(ws)
        reason = await refused_ws(a, 4429, "rate_limited")
        assert reason.startswith("too many new sessions; retry in ")
        async with websockets.connect(b) as ws:  # another key
            await start(ws)
        await refused_ws(b, 4429, "rate_limited")  # now the address is spent
        status, headers, answer = await asyncio.to_thread(
            _request, "POST", server.http_url + "/api/offer", BAD_SDP_OFFER, bearer(keys["other"]))
        assert (status, answer["error"]) == (429, "rate_limited"), answer
        assert 1 <= int(headers["retry-after"]) <= 60 and "this address" in answer["message"]
        # Regression: an offer with a made-up pc_id makes a new peer in pipecat, so it is a new
        # session too (it used to slip past the max_sessions check as a "renegotiation").
        status, _ = await http("POST", server.http_url + "/api/offer",
                               {**BAD_SDP_OFFER, "pc_id": "made-up"}, **bearer(keys["other"]))
        assert status == 429
        # Trickling candidates is not a new session: not limited.
        status, _ = await http("PATCH", server.http_url + "/api/offer",
                               {"pc_id": "nobody", "candidates": []}, **bearer(keys["other"]))
        assert status == 404
        async with websockets.connect(b, local_addr=("127.0.0.2", 0)) as ws:  # another client
            await start(ws)
        await wait_for_no_sessions(server)
    finally:
        await server.stop()


async def test_a_client_cannot_claim_another_address_with_x_forwarded_for(models):
    """Uvicorn believes X-Forwarded-For from loopback unless told otherwise: a local client
    then had a fresh address, and a fresh per-address limit, on every request."""
    settings = make_settings(limits={"sessions_per_minute_per_ip": 1})
    server = await RunningServer(settings, models).start()
    try:
        status, answer = await http("POST", server.http_url + "/api/offer", BAD_SDP_OFFER,
                                    **{"X-Forwarded-For": "203.0.113.1"})
        assert (status, answer["error"]) == (400, "bad_sdp")
        status, answer = await http("POST", server.http_url + "/api/offer", BAD_SDP_OFFER,
                                    **{"X-Forwarded-For": "203.0.113.2"})
        assert (status, answer["error"]) == (429, "rate_limited"), answer
    finally:
        await server.stop()


async def test_a_listed_proxy_passes_the_clients_address_on(models):
    settings = make_settings(limits={"sessions_per_minute_per_ip": 1},
                             server={"forwarded_allow_ips": ["127.0.0.0/8"]})
    server = await RunningServer(settings, models).start()
    try:
        for client in ("203.0.113.1", "203.0.113.2"):  # two clients behind the proxy
            status, answer = await http("POST", server.http_url + "/api/offer", BAD_SDP_OFFER,
                                        **{"X-Forwarded-For": client})
            assert (status, answer["error"]) == (400, "bad_sdp"), (client, answer)
        status, answer = await http("POST", server.http_url + "/api/offer", BAD_SDP_OFFER,
                                    **{"X-Forwarded-For": "203.0.113.1"})
        assert status == 429, answer
    finally:
        await server.stop()


async def test_the_openai_endpoints_take_the_same_keys_as_bearer_tokens(keyed, keys):
    """What OpenAI's SDKs send: `Authorization: Bearer <key>`, on /v1 and /v1/realtime."""
    import openai
    from openai import AsyncOpenAI

    base = f"{keyed.http_url}/v1"
    async with AsyncOpenAI(base_url=base, api_key="vxl_live_nope", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.models.list()
        assert refused.value.code == "unauthorized"
        with pytest.raises(openai.AuthenticationError):
            await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
        async with client.realtime.connect(model="gpt-realtime") as connection:
            error = await connection.recv()
            assert error.type == "error" and error.error.code == "unauthorized"
    async with AsyncOpenAI(base_url=base, api_key=keys["live"], max_retries=0) as client:
        assert [m.id async for m in client.models.list()]
        async with client.realtime.connect(model="gpt-realtime") as connection:
            created = await connection.recv()
            assert created.type == "session.created" and created.session.model == "gpt-realtime"
