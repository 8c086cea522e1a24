"""A protocol-level fake Discord on 127.0.0.1: gateway websocket and the REST routes a bot uses.

The real discord.py client talks to it unchanged: point `discord.http.Route.BASE` and
`DiscordWebSocket.DEFAULT_GATEWAY` here with `fake.patch_client()`. Payloads are built as
Discord sends them (snowflakes, member objects, `referenced_message`, interaction tokens),
and Discord's rules that matter to a bot are enforced: a bad token gets 401 (REST) or close
code 4004 (gateway), privileged intents not enabled get 4014, content over 2,000 characters
or embeds over their limits get 400 with code 50035, an interaction must be acknowledged
once and within 3 seconds, follow-ups need an acknowledged interaction. Unknown routes get
404 and are recorded in `unknown`; every request is recorded in `requests`.

Who got pinged by a message is computed like Discord does from its content and
`allowed_mentions` and kept in `pings[message_id]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yarl
from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"

# Gateway intents (bit values) and which of them are privileged.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT
ALL_INTENTS = (1 << 26) - 1

# Permission bits used in the fake guild.
PERM_ADMINISTRATOR = 1 << 3
PERM_MANAGE_GUILD = 1 << 5
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 16) | (1 << 31) | (1 << 35) | (1 << 38)

EPHEMERAL = 1 << 6
LOADING = 1 << 7
INTERACTION_WINDOW_S = 3.0


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).isoformat()


def _form_error(field_path: str, message: str, code: str = "BASE_TYPE_MAX_LENGTH") -> tuple[int, dict[str, Any]]:
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_path.split(".")):
        errors = {part: errors}
    return 400, {"code": 50035, "message": "Invalid Form Body", "errors": errors}


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"code": code, "message": message}


@dataclass
class Request:
    """One HTTP request the client made, as the fake saw it."""

    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    body: Any
    at: float
    status: int = 0
    route: str = ""  # the route pattern that handled it, "" for unknown

    def __repr__(self) -> str:
        return f"<{self.method} {self.path} -> {self.status}>"


@dataclass
class FakeUser:
    id: int
    username: str
    bot: bool = False
    permissions: int = MEMBER_PERMISSIONS

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.username.title(),
            "avatar": None,
            "public_flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class Interaction:
    id: int
    token: str
    kind: int
    channel_id: int
    user: FakeUser
    dispatched_at: float
    callback_type: int | None = None
    callback_at: float | None = None
    ephemeral: bool = False
    original_id: int | None = None
    followups: list[int] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # slash-command options as the user filled them


class FakeDiscord:
    """The fake: start with `async with FakeDiscord() as fake`, then `with fake.patch_client():`."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token.abc123",
        enabled_privileged_intents: int = INTENT_MESSAGE_CONTENT,
        heartbeat_interval_ms: int = 41250,
    ) -> None:
        self.token = token
        self.enabled_privileged_intents = enabled_privileged_intents
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._ids = itertools.count(1)
        self.bot = FakeUser(self.snowflake(), "qabot", bot=True)
        self.app_id = self.bot.id
        self.owner = FakeUser(self.snowflake(), "owner", permissions=MEMBER_PERMISSIONS | PERM_ADMINISTRATOR | PERM_MANAGE_GUILD)
        self.guild_id = self.snowflake()
        self.users: dict[int, FakeUser] = {u.id: u for u in (self.bot, self.owner)}
        self.channels: dict[int, dict[str, Any]] = {}
        self.general_id = self._add_text_channel("general")
        self.other_id = self._add_text_channel("other")
        self.messages: dict[int, dict[str, Any]] = {}
        self.channel_messages: dict[int, list[int]] = {}
        self.deleted: list[int] = []
        self.pings: dict[int, dict[str, Any]] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or str(guild id) -> registered commands
        self.interactions: dict[int, Interaction] = {}
        self.requests: list[Request] = []
        self.unknown: list[Request] = []
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.gateway_connects = 0
        self.heartbeats = 0
        self.heartbeat_times: list[float] = []  # time.monotonic() of each heartbeat received (each is ACKed)
        self.message_sent_at: dict[int, float] = {}
        self._throttles: list[list[Any]] = []  # [method, compiled path pattern, times left, retry_after]
        # gateway session
        self._ws: web.WebSocketResponse | None = None
        self._session_id: str | None = None
        self._seq = 0
        self._events: list[dict[str, Any]] = []
        self._send_lock = asyncio.Lock()
        self._changed: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------------ lifecycle
    def snowflake(self) -> int:
        return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._ids) & 0x3FFFFF)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> FakeDiscord:
        self._changed = asyncio.Event()
        self._send_lock = asyncio.Lock()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.contextmanager
    def patch_client(self) -> Iterator[None]:
        """Point discord.py's REST base and gateway URL at this fake; restored on exit."""
        import discord.gateway
        import discord.http

        old_base, old_gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    # -------------------------------------------------------------------------- world
    def _add_text_channel(self, name: str) -> int:
        cid = self.snowflake()
        self.channels[cid] = {
            "id": str(cid),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": name,
            "position": len(self.channels),
            "permission_overwrites": [],
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        return cid

    def add_user(self, name: str, *, bot: bool = False, manage_guild: bool = False) -> FakeUser:
        perms = MEMBER_PERMISSIONS | (PERM_MANAGE_GUILD if manage_guild else 0)
        user = FakeUser(self.snowflake(), name, bot=bot, permissions=perms)
        self.users[user.id] = user
        return user

    def dm_channel(self, user: FakeUser) -> int:
        for cid, ch in self.channels.items():
            if ch["type"] == 1 and ch["recipients"][0]["id"] == str(user.id):
                return cid
        cid = self.snowflake()
        self.channels[cid] = {"id": str(cid), "type": 1, "recipients": [user.payload()], "last_message_id": None, "flags": 0}
        return cid

    def _member(self, user: FakeUser, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [],
            "joined_at": _iso(time.time() - 86400),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = user.payload()
        return data

    def _guild_payload(self) -> dict[str, Any]:
        threads = [dict(c) for c in self.channels.values() if c["type"] == 11 and not c["thread_metadata"]["archived"]]
        return {
            "id": str(self.guild_id),
            "name": "Fake Guild",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner.id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [
                {
                    "id": str(self.guild_id),
                    "name": "@everyone",
                    "permissions": str(MEMBER_PERMISSIONS),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": _iso(time.time() - 3600),
            "large": False,
            "unavailable": False,
            "member_count": len(self.users),
            "members": [self._member(self.bot)],
            "channels": [c for c in self.channels.values() if c["type"] == 0],
            "threads": threads,
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    # ------------------------------------------------------------------------ gateway
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.gateway_connects += 1
        self._record(Request("GET", "/gateway", dict(request.query), None, time.monotonic(), 101, "gateway"))
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                op, data = payload.get("op"), payload.get("d")
                if op == 1:
                    self.heartbeats += 1
                    self.heartbeat_times.append(time.monotonic())
                    await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
                elif op == 2:
                    await self._identify(ws, data)
                elif op == 6:
                    await self._resume(ws, data)
        finally:
            if self._ws is ws:
                self._ws = None
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents & ~ALL_INTENTS:
            await ws.close(code=4013, message=b"Invalid intent(s).")
            return
        if intents & PRIVILEGED_INTENTS & ~self.enabled_privileged_intents:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        self._session_id = uuid.uuid4().hex
        self._seq = 0
        self._events = []
        self._ws = ws
        ready = {
            "v": 10,
            "user": {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": self._session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.app_id), "flags": 0},
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "user_settings": {},
            "auth": {},
            "geo_ordered_rtc_regions": [],
            "_trace": ["fake-discord"],
        }
        if "shard" in data:  # a sharded client gets its shard back, as Discord does
            ready["shard"] = data["shard"]
        await self.dispatch("READY", ready)
        await self.dispatch("GUILD_CREATE", self._guild_payload())

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.resumes.append(data)
        if data.get("token") != self.token or data.get("session_id") != self._session_id:
            await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
            return
        self._ws = ws
        last = data.get("seq") or 0
        async with self._send_lock:
            for event in self._events:
                if event["s"] > last:
                    await ws.send_str(json.dumps(event))
        await self.dispatch("RESUMED", {"_trace": ["fake-discord"]})

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH to the connected client (kept for replay after a RESUME)."""
        async with self._send_lock:
            self._seq += 1
            frame = {"op": 0, "t": event, "s": self._seq, "d": data}
            self._events.append(frame)
            ws = self._ws
            if ws is not None and not ws.closed:
                try:
                    await ws.send_str(json.dumps(frame))
                except ConnectionError:
                    pass

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client must reconnect and RESUME."""
        ws = self._ws
        if ws is not None:
            self._ws = None  # events until the RESUME are queued for replay
            await ws.send_str(json.dumps({"op": 7, "d": None, "s": None, "t": None}))

    # --------------------------------------------------------------- what users do
    def _mention_ids(self, content: str) -> list[int]:
        return [int(m) for m in re.findall(r"<@!?(\d+)>", content)]

    def _user_mentions(self, ids: list[int], guild: bool) -> list[dict[str, Any]]:
        out = []
        for uid in dict.fromkeys(ids):
            user = self.users.get(uid)
            if user is None:
                continue
            data = user.payload()
            if guild:
                data["member"] = self._member(user, with_user=False)
            out.append(data)
        return out

    def _new_message(
        self,
        *,
        channel_id: int,
        author: FakeUser,
        content: str = "",
        embeds: list[Any] | None = None,
        components: list[Any] | None = None,
        reference: dict[str, Any] | None = None,
        mentions: list[int] | None = None,
        mention_everyone: bool = False,
        flags: int = 0,
        webhook_id: int | None = None,
        interaction: Interaction | None = None,
    ) -> dict[str, Any]:
        channel = self.channels[channel_id]
        in_guild = channel["type"] != 1
        mid = self.snowflake()
        msg: dict[str, Any] = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "author": author.payload(),
            "content": content,
            "timestamp": _iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": mention_everyone,
            "mentions": self._user_mentions(mentions or [], in_guild),
            "mention_roles": [],
            "attachments": [],
            "embeds": embeds or [],
            "components": components or [],
            "pinned": False,
            "type": 19 if reference else 0,
            "flags": flags,
        }
        if reference:
            ref_id = int(reference["message_id"])
            msg["message_reference"] = {
                "type": 0,
                "message_id": str(ref_id),
                "channel_id": str(channel_id),
                **({"guild_id": str(self.guild_id)} if in_guild else {}),
            }
            msg["referenced_message"] = self.messages.get(ref_id)
        if webhook_id is not None:
            msg["webhook_id"] = str(webhook_id)
            msg["application_id"] = str(self.app_id)
        if interaction is not None:
            msg["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.kind,
                "user": interaction.user.payload(),
                "authorizing_integration_owners": {"0": str(self.guild_id)},
            }
        self.messages[mid] = msg
        self.channel_messages.setdefault(channel_id, []).append(mid)
        channel["last_message_id"] = str(mid)
        self.message_sent_at[mid] = time.monotonic()
        return msg

    def _gateway_message(self, msg: dict[str, Any]) -> dict[str, Any]:
        data = dict(msg)
        channel = self.channels[int(msg["channel_id"])]
        if channel["type"] != 1:
            data["guild_id"] = str(self.guild_id)
            author = self.users.get(int(msg["author"]["id"]))
            if author is not None and "webhook_id" not in msg:
                data["member"] = self._member(author, with_user=False)
        return data

    async def user_says(
        self,
        content: str,
        *,
        author: FakeUser,
        channel_id: int | None = None,
        reply_to: dict[str, Any] | int | None = None,
        ping_reply: bool = True,
    ) -> dict[str, Any]:
        """A user posts a message; the client receives MESSAGE_CREATE as Discord sends it."""
        channel_id = channel_id or self.general_id
        mentions = self._mention_ids(content)
        reference = None
        if reply_to is not None:
            ref_id = int(reply_to["id"]) if isinstance(reply_to, dict) else int(reply_to)
            reference = {"message_id": ref_id}
            if ping_reply:
                mentions.append(int(self.messages[ref_id]["author"]["id"]))
        everyone = "@everyone" in content or "@here" in content
        msg = self._new_message(
            channel_id=channel_id, author=author, content=content, reference=reference,
            mentions=mentions, mention_everyone=everyone,
        )
        await self.dispatch("MESSAGE_CREATE", self._gateway_message(msg))
        return msg

    def _registered(self, name: str) -> tuple[dict[str, Any], str | None]:
        for scope in (str(self.guild_id), "global"):
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return command, (None if scope == "global" else scope)
        raise LookupError(f"slash command /{name} was never registered (commands: {self.commands})")

    def _interaction_base(self, kind: int, user: FakeUser, channel_id: int) -> tuple[Interaction, dict[str, Any]]:
        inter = Interaction(self.snowflake(), f"itoken-{uuid.uuid4().hex}", kind, channel_id, user, time.monotonic())
        self.interactions[inter.id] = inter
        channel = self.channels[channel_id]
        payload: dict[str, Any] = {
            "id": str(inter.id),
            "application_id": str(self.app_id),
            "type": kind,
            "token": inter.token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": channel,
            "app_permissions": str(MEMBER_PERMISSIONS),
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if channel["type"] == 1:
            payload["user"] = user.payload()
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"0": str(self.guild_id)}
        else:
            payload["guild_id"] = str(self.guild_id)
            payload["guild"] = {"id": str(self.guild_id), "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["member"] = {**self._member(user), "permissions": str(user.permissions)}
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": str(self.guild_id)}
        return inter, payload

    async def slash(self, name: str, *, user: FakeUser, channel_id: int | None = None, **options: Any) -> Interaction:
        """A user runs a registered slash command: INTERACTION_CREATE type 2."""
        command, guild_scope = self._registered(name)
        inter, payload = self._interaction_base(2, user, channel_id or self.general_id)
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1}
        if options:
            types = {o["name"]: o["type"] for o in command.get("options", [])}
            unknown = set(options) - set(types)
            if unknown:
                raise LookupError(f"/{name} has no options {unknown}")
            data["options"] = [{"name": k, "type": types[k], "value": v} for k, v in options.items()]
            inter.options = dict(options)
        if guild_scope:
            data["guild_id"] = guild_scope
        payload["data"] = data
        await self.dispatch("INTERACTION_CREATE", payload)
        return inter

    async def click(self, message: dict[str, Any], custom_id: str, *, user: FakeUser) -> Interaction:
        """A user clicks a button on a message: INTERACTION_CREATE type 3."""
        ids = [c.get("custom_id") for row in message.get("components", []) for c in row.get("components", [])]
        if custom_id not in ids:
            raise LookupError(f"no button {custom_id!r} on message {message['id']} (has {ids})")
        inter, payload = self._interaction_base(3, user, int(message["channel_id"]))
        payload["message"] = self.messages[int(message["id"])]
        payload["data"] = {"custom_id": custom_id, "component_type": 2}
        await self.dispatch("INTERACTION_CREATE", payload)
        return inter

    def throttle(self, method: str, pattern: str, *, times: int = 1, retry_after: float = 0.2) -> None:
        """Answer the next `times` matching requests with a 429, as Discord's rate limiter does."""
        self._throttles.append([method, re.compile(pattern), times, retry_after])

    def _throttled(self, method: str, path: str) -> float | None:
        for entry in self._throttles:
            if entry[0] == method and entry[2] > 0 and entry[1].fullmatch(path):
                entry[2] -= 1
                return float(entry[3])
        return None

    # -------------------------------------------------------------- queries for tests
    def _record(self, request: Request) -> None:
        self.requests.append(request)
        if self._changed is not None:
            self._changed.set()

    def bot_messages(self, channel_id: int | None = None) -> list[dict[str, Any]]:
        """Messages the bot posted (directly or through interaction webhooks), oldest first."""
        out = []
        for mid, msg in self.messages.items():
            if msg["author"]["id"] != str(self.bot.id) or mid in self.deleted:
                continue
            if channel_id is not None and msg["channel_id"] != str(channel_id):
                continue
            out.append(msg)
        return out

    def threads(self) -> list[dict[str, Any]]:
        return [c for c in self.channels.values() if c["type"] == 11]

    def find(self, method: str, pattern: str) -> list[Request]:
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method and rx.fullmatch(r.path)]

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait (bounded) until predicate() is truthy; returns its value."""
        assert self._changed is not None
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s; last requests: {self.requests[-8:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.25))

    async def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no request has arrived for `quiet` seconds (the client is idle)."""
        deadline = time.monotonic() + timeout
        count = -1
        while time.monotonic() < deadline:
            if len(self.requests) == count:
                return
            count = len(self.requests)
            await asyncio.sleep(quiet)
        raise TimeoutError("client never went quiet")

    # --------------------------------------------------------------------------- REST
    _ROUTES: list[tuple[str, str, str]] = [
        ("GET", r"/users/@me", "_get_me"),
        ("GET", r"/gateway/bot", "_get_gateway_bot"),
        ("GET", r"/oauth2/applications/@me", "_get_application"),
        ("PUT", r"/applications/(?P<app>\d+)/commands", "_put_commands"),
        ("PUT", r"/applications/(?P<app>\d+)/guilds/(?P<guild>\d+)/commands", "_put_commands"),
        ("GET", r"/applications/(?P<app>\d+)/commands", "_get_commands"),
        ("GET", r"/applications/(?P<app>\d+)/guilds/(?P<guild>\d+)/commands", "_get_commands"),
        ("GET", r"/channels/(?P<channel>\d+)", "_get_channel"),
        ("POST", r"/channels/(?P<channel>\d+)/messages", "_post_message"),
        ("GET", r"/channels/(?P<channel>\d+)/messages", "_get_messages"),
        ("GET", r"/channels/(?P<channel>\d+)/messages/(?P<message>\d+)", "_get_message"),
        ("PATCH", r"/channels/(?P<channel>\d+)/messages/(?P<message>\d+)", "_patch_message"),
        ("DELETE", r"/channels/(?P<channel>\d+)/messages/(?P<message>\d+)", "_delete_message"),
        ("POST", r"/channels/(?P<channel>\d+)/typing", "_typing"),
        ("POST", r"/channels/(?P<channel>\d+)/messages/(?P<message>\d+)/threads", "_start_thread"),
        ("POST", r"/interactions/(?P<interaction>\d+)/(?P<token>[^/]+)/callback", "_interaction_callback"),
        ("POST", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)", "_webhook_send"),
        ("GET", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<message>@original|\d+)", "_webhook_get"),
        ("PATCH", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<message>@original|\d+)", "_webhook_edit"),
        ("DELETE", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<message>@original|\d+)", "_webhook_delete"),
    ]
    _NO_AUTH = {"_interaction_callback", "_webhook_send", "_webhook_get", "_webhook_edit", "_webhook_delete"}

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body: Any = None
        if request.can_read_body:
            if request.content_type.startswith("multipart/"):
                form = await request.post()
                body = json.loads(str(form.get("payload_json", "null")))
            else:
                raw = await request.read()
                body = json.loads(raw) if raw else None
        rel = path[len(API_PREFIX):] if path.startswith(API_PREFIX) else path
        record = Request(request.method, rel, dict(request.query), body, time.monotonic())
        status, payload = 404, {"code": 0, "message": "404: Not Found"}
        retry_after = self._throttled(request.method, rel)
        if retry_after is not None:
            record.status, record.route = 429, "throttled"
            self._record(record)
            body_429 = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
            headers = {
                "Content-Type": "application/json",
                "Via": "1.1 google",  # discord.py only trusts a 429 that came through Discord's edge
                "Retry-After": str(max(1, round(retry_after))),
                "X-RateLimit-Scope": "user",
            }
            return web.Response(status=429, body=json.dumps(body_429).encode(), headers=headers)
        if path.startswith(API_PREFIX):
            for method, pattern, handler_name in self._ROUTES:
                m = re.fullmatch(pattern, rel)
                if m and method == request.method:
                    record.route = pattern
                    if handler_name not in self._NO_AUTH and request.headers.get("Authorization") != f"Bot {self.token}":
                        status, payload = _error(401, 0, "401: Unauthorized")
                    else:
                        status, payload = await getattr(self, handler_name)(request, body, **m.groupdict())
                    break
        record.status = status
        if not record.route:
            self.unknown.append(record)
        self._record(record)
        if status == 204 or payload is None:
            return web.Response(status=204)
        return web.Response(status=status, body=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})

    async def _get_gateway_bot(self, request: web.Request, body: Any) -> tuple[int, Any]:
        """What an AutoShardedClient asks first: where the gateway is and how many shards to open."""
        return 200, {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }

    async def _get_me(self, request: web.Request, body: Any) -> tuple[int, Any]:
        return 200, {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0, "bio": ""}

    async def _get_application(self, request: web.Request, body: Any) -> tuple[int, Any]:
        return 200, {
            "id": str(self.app_id),
            "name": "qabot",
            "icon": None,
            "description": "",
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "terms_of_service_url": None,
            "privacy_policy_url": None,
            "owner": self.owner.payload(),
            "verify_key": "0" * 64,
            "team": None,
            "flags": 0,
            "tags": [],
            "bot": self.bot.payload(),
        }

    _COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")

    async def _put_commands(self, request: web.Request, body: Any, app: str, guild: str | None = None) -> tuple[int, Any]:
        if int(app) != self.app_id:
            return _error(403, 50001, "Missing Access")
        if guild is not None and int(guild) != self.guild_id:
            return _error(403, 50001, "Missing Access")
        if not isinstance(body, list) or len(body) > 100:
            return _form_error("commands", "Must be a list of at most 100 commands", "BASE_TYPE_BAD_LENGTH")
        scope = guild or "global"
        old = {c["name"]: c for c in self.commands.get(scope, [])}
        stored = []
        for i, command in enumerate(body):
            name = command.get("name", "")
            if not self._COMMAND_NAME.match(name) or name != name.lower():
                return _form_error(f"{i}.name", "Command name is invalid", "APPLICATION_COMMAND_INVALID_NAME")
            if command.get("type", 1) == 1 and not 1 <= len(command.get("description", "")) <= 100:
                return _form_error(f"{i}.description", "Must be between 1 and 100 in length.", "BASE_TYPE_BAD_LENGTH")
            options = command.get("options", [])
            if len(options) > 25:
                return _form_error(f"{i}.options", "Must be 25 or fewer in length.")
            seen_optional = False
            for j, option in enumerate(options):
                if not self._COMMAND_NAME.match(option.get("name", "")) or not 1 <= len(option.get("description", "")) <= 100:
                    return _form_error(f"{i}.options.{j}", "Option name or description invalid", "BASE_TYPE_BAD_LENGTH")
                if option.get("required") and seen_optional:
                    return _form_error(f"{i}.options.{j}", "Required options must be placed before non-required options",
                                       "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID")
                seen_optional = seen_optional or not option.get("required", False)
            cid = old[name]["id"] if name in old else str(self.snowflake())
            stored.append({
                **command,
                "id": cid,
                "application_id": str(self.app_id),
                "version": str(self.snowflake()),
                "type": command.get("type", 1),
                "default_member_permissions": (
                    None if command.get("default_member_permissions") is None else str(command["default_member_permissions"])
                ),
                "nsfw": command.get("nsfw", False),
                **({"guild_id": guild} if guild else {}),
            })
        self.commands[scope] = stored
        return 200, stored

    async def _get_commands(self, request: web.Request, body: Any, app: str, guild: str | None = None) -> tuple[int, Any]:
        return 200, self.commands.get(guild or "global", [])

    async def _get_channel(self, request: web.Request, body: Any, channel: str) -> tuple[int, Any]:
        ch = self.channels.get(int(channel))
        return (200, ch) if ch else _error(404, 10003, "Unknown Channel")

    def _validate_message(self, body: dict[str, Any], *, partial: bool = False) -> tuple[int, Any] | None:
        """Discord's limits on a message body; None when valid."""
        content = body.get("content")
        if content is not None and len(content) > 2000:
            return _form_error("content", "Must be 2000 or fewer in length.")
        embeds = body.get("embeds") or []
        if len(embeds) > 10:
            return _form_error("embeds", "Must be 10 or fewer in length.")
        total = 0
        for i, embed in enumerate(embeds):
            for key, limit in (("title", 256), ("description", 4096)):
                value = embed.get(key) or ""
                if len(value) > limit:
                    return _form_error(f"embeds.{i}.{key}", f"Must be {limit} or fewer in length.")
                total += len(value)
            fields = embed.get("fields") or []
            if len(fields) > 25:
                return _form_error(f"embeds.{i}.fields", "Must be 25 or fewer in length.")
            for j, f in enumerate(fields):
                name, value = f.get("name") or "", f.get("value") or ""
                if not name or not value:
                    return _form_error(f"embeds.{i}.fields.{j}", "This field is required", "BASE_TYPE_REQUIRED")
                if len(name) > 256 or len(value) > 1024:
                    return _form_error(f"embeds.{i}.fields.{j}", "Must be 256 / 1024 or fewer in length.")
                total += len(name) + len(value)
            footer = (embed.get("footer") or {}).get("text") or ""
            author = (embed.get("author") or {}).get("name") or ""
            if len(footer) > 2048 or len(author) > 256:
                return _form_error(f"embeds.{i}", "Footer or author too long.")
            total += len(footer) + len(author)
        if total > 6000:
            return _form_error("embeds", "Embed size exceeds maximum size of 6000", "MAX_EMBED_SIZE_EXCEEDED")
        rows = body.get("components") or []
        if len(rows) > 5:
            return _form_error("components", "Must be 5 or fewer in length.")
        for i, row in enumerate(rows):
            items = row.get("components") or []
            if row.get("type") != 1 or not 1 <= len(items) <= 5:
                return _form_error(f"components.{i}", "Invalid action row", "BASE_TYPE_BAD_LENGTH")
            for j, item in enumerate(items):
                if item.get("type") == 2 and item.get("style") != 5:
                    custom_id = item.get("custom_id") or ""
                    if not 1 <= len(custom_id) <= 100:
                        return _form_error(f"components.{i}.components.{j}.custom_id", "Must be between 1 and 100 in length.")
                if len(item.get("label") or "") > 80:
                    return _form_error(f"components.{i}.components.{j}.label", "Must be 80 or fewer in length.")
        allowed = body.get("allowed_mentions")
        if allowed is not None:
            parse = allowed.get("parse", [])
            if any(p not in ("users", "roles", "everyone") for p in parse):
                return _form_error("allowed_mentions.parse", "Invalid value", "BASE_TYPE_CHOICES")
            if ("users" in parse and allowed.get("users")) or ("roles" in parse and allowed.get("roles")):
                return _form_error("allowed_mentions", "parse and explicit ids are mutually exclusive", "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE")
        if not partial and not (body.get("content") or embeds or rows or body.get("sticker_ids")):
            return _error(400, 50006, "Cannot send an empty message")
        return None

    def _pings(self, content: str, allowed: dict[str, Any] | None, replied_author: int | None) -> dict[str, Any]:
        """Who gets notified, by Discord's rules for `allowed_mentions` (absent = parse everything)."""
        parse = ["users", "roles", "everyone"] if allowed is None else allowed.get("parse", [])
        users = set(self._mention_ids(content)) if "users" in parse else set(map(int, (allowed or {}).get("users", []))) & set(self._mention_ids(content))
        roles_in = set(map(int, re.findall(r"<@&(\d+)>", content)))
        roles = roles_in if "roles" in parse else set(map(int, (allowed or {}).get("roles", []))) & roles_in
        everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
        if replied_author is not None and (allowed is None or allowed.get("replied_user")):
            users.add(replied_author)
        return {"everyone": everyone, "users": sorted(users), "roles": sorted(roles)}

    def _store_bot_message(
        self, channel_id: int, body: dict[str, Any], *, webhook: Interaction | None = None, flags: int = 0
    ) -> tuple[int, Any]:
        reference = body.get("message_reference")
        replied_author = None
        if reference:
            ref = self.messages.get(int(reference["message_id"]))
            if ref is None or int(ref["channel_id"]) != channel_id:
                if reference.get("fail_if_not_exists", True):
                    return _form_error("message_reference", "Unknown message", "REPLIES_UNKNOWN_MESSAGE")
                reference = None
            else:
                replied_author = int(ref["author"]["id"])
        content = body.get("content") or ""
        pings = self._pings(content, body.get("allowed_mentions"), replied_author)
        msg = self._new_message(
            channel_id=channel_id, author=self.bot, content=content, embeds=body.get("embeds") or [],
            components=body.get("components") or [], reference=reference, mentions=pings["users"],
            mention_everyone=pings["everyone"], flags=flags | (body.get("flags") or 0),
            webhook_id=self.app_id if webhook else None, interaction=webhook,
        )
        self.pings[int(msg["id"])] = pings
        return 200, msg

    async def _post_message(self, request: web.Request, body: Any, channel: str) -> tuple[int, Any]:
        cid = int(channel)
        if cid not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        invalid = self._validate_message(body or {})
        if invalid:
            return invalid
        status, msg = self._store_bot_message(cid, body)
        if status == 200:
            await self.dispatch("MESSAGE_CREATE", self._gateway_message(msg))
        return status, msg

    async def _get_messages(self, request: web.Request, body: Any, channel: str) -> tuple[int, Any]:
        ids = [m for m in self.channel_messages.get(int(channel), []) if m not in self.deleted]
        before = request.query.get("before")
        if before:
            ids = [m for m in ids if m < int(before)]
        limit = int(request.query.get("limit", 50))
        return 200, [self.messages[m] for m in reversed(ids)][:limit]

    async def _get_message(self, request: web.Request, body: Any, channel: str, message: str) -> tuple[int, Any]:
        msg = self.messages.get(int(message))
        if msg is None or msg["channel_id"] != channel or int(message) in self.deleted:
            return _error(404, 10008, "Unknown Message")
        return 200, msg

    async def _patch_message(self, request: web.Request, body: Any, channel: str, message: str) -> tuple[int, Any]:
        msg = self.messages.get(int(message))
        if msg is None or msg["channel_id"] != channel or int(message) in self.deleted:
            return _error(404, 10008, "Unknown Message")
        if msg["author"]["id"] != str(self.bot.id):
            return _error(403, 50005, "Cannot edit a message authored by another user")
        return self._edit(msg, body or {})

    def _edit(self, msg: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any]:
        invalid = self._validate_message(body, partial=True)
        if invalid:
            return invalid
        for key in ("content", "embeds", "components"):
            if key in body:
                msg[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        msg["flags"] = msg["flags"] & ~LOADING
        msg["edited_timestamp"] = _iso()
        self.pings[int(msg["id"])] = self._pings(msg["content"], body.get("allowed_mentions"), None)
        return 200, msg

    async def _delete_message(self, request: web.Request, body: Any, channel: str, message: str) -> tuple[int, Any]:
        msg = self.messages.get(int(message))
        if msg is None or msg["channel_id"] != channel or int(message) in self.deleted:
            return _error(404, 10008, "Unknown Message")
        self.deleted.append(int(message))
        return 204, None

    async def _typing(self, request: web.Request, body: Any, channel: str) -> tuple[int, Any]:
        return (204, None) if int(channel) in self.channels else _error(404, 10003, "Unknown Channel")

    async def _start_thread(self, request: web.Request, body: Any, channel: str, message: str) -> tuple[int, Any]:
        parent = self.channels.get(int(channel))
        msg = self.messages.get(int(message))
        if parent is None:
            return _error(404, 10003, "Unknown Channel")
        if msg is None or msg["channel_id"] != channel:
            return _error(404, 10008, "Unknown Message")
        if parent["type"] not in (0, 5):
            return _error(400, 50024, "Cannot execute action on this channel type")
        if int(message) in self.channels:
            return _error(400, 160004, "A thread has already been created for this message")
        name = (body or {}).get("name") or ""
        if not 1 <= len(name) <= 100:
            return _form_error("name", "Must be between 1 and 100 in length.", "BASE_TYPE_BAD_LENGTH")
        now = _iso()
        thread = {
            "id": message,
            "type": 11,
            "guild_id": str(self.guild_id),
            "parent_id": channel,
            "owner_id": str(self.bot.id),
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": (body or {}).get("auto_archive_duration", 4320),
                "archive_timestamp": now,
                "locked": False,
                "create_timestamp": now,
            },
        }
        self.channels[int(message)] = thread
        msg["thread"] = thread
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return 201, {**thread, "member": {"id": message, "user_id": str(self.bot.id), "join_timestamp": now, "flags": 1}}

    # ---------------------------------------------------------------- interactions
    def _interaction_for(self, app: str, token: str) -> Interaction | None:
        if int(app) != self.app_id:
            return None
        return next((i for i in self.interactions.values() if i.token == token), None)

    async def _interaction_callback(self, request: web.Request, body: Any, interaction: str, token: str) -> tuple[int, Any]:
        inter = self.interactions.get(int(interaction))
        if inter is None or inter.token != token:
            return _error(404, 10062, "Unknown interaction")
        if time.monotonic() - inter.dispatched_at > INTERACTION_WINDOW_S:
            return _error(404, 10062, "Unknown interaction")
        if inter.callback_type is not None:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        kind = (body or {}).get("type")
        data = (body or {}).get("data") or {}
        if kind not in (4, 5, 6, 7) or (kind in (6, 7) and inter.kind != 3):
            return _form_error("type", "Invalid interaction response type", "BASE_TYPE_CHOICES")
        flags = data.get("flags") or 0
        message = None
        if kind == 4:
            invalid = self._validate_message(data)
            if invalid:
                return invalid
            status, message = self._store_bot_message(inter.channel_id, data, webhook=inter, flags=flags)
        elif kind == 5:
            status, message = self._store_bot_message(inter.channel_id, {"content": ""}, webhook=inter, flags=flags | LOADING)
        inter.callback_type, inter.callback_at = kind, time.monotonic()
        inter.ephemeral = bool(flags & EPHEMERAL)
        if message is not None:
            inter.original_id = int(message["id"])
            if kind == 4 and not inter.ephemeral:
                await self.dispatch("MESSAGE_CREATE", self._gateway_message(message))
        if request.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        response: dict[str, Any] = {
            "interaction": {
                "id": interaction,
                "type": inter.kind,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": inter.ephemeral,
                **({"response_message_id": str(message["id"])} if message else {}),
            }
        }
        if message is not None:
            response["resource"] = {"type": kind, "message": message}
        return 200, response

    async def _webhook_send(self, request: web.Request, body: Any, app: str, token: str) -> tuple[int, Any]:
        inter = self._interaction_for(app, token)
        if inter is None or inter.callback_type is None:
            return _error(404, 10015, "Unknown Webhook")
        body = body or {}
        invalid = self._validate_message(body)
        if invalid:
            return invalid
        original = self.messages.get(inter.original_id or 0)
        if original is not None and original["flags"] & LOADING and inter.original_id not in self.deleted:
            # The first follow-up after a deferral fills in the "thinking…" message.
            status, msg = self._edit(original, body)
        else:
            flags = body.get("flags") or 0
            status, msg = self._store_bot_message(inter.channel_id, body, webhook=inter, flags=flags)
        if status != 200:
            return status, msg
        inter.followups.append(int(msg["id"]))
        if not msg["flags"] & EPHEMERAL:
            await self.dispatch("MESSAGE_CREATE", self._gateway_message(msg))
        wait = request.query.get("wait") in ("1", "true", "True")
        return (200, msg) if wait else (204, None)

    def _webhook_message(self, app: str, token: str, message: str) -> tuple[Interaction | None, dict[str, Any] | None]:
        inter = self._interaction_for(app, token)
        if inter is None:
            return None, None
        mid = inter.original_id if message == "@original" else int(message)
        if mid is None or mid in self.deleted or (mid != inter.original_id and mid not in inter.followups):
            return inter, None
        return inter, self.messages.get(mid)

    async def _webhook_get(self, request: web.Request, body: Any, app: str, token: str, message: str) -> tuple[int, Any]:
        inter, msg = self._webhook_message(app, token, message)
        if inter is None:
            return _error(404, 10015, "Unknown Webhook")
        return (200, msg) if msg else _error(404, 10008, "Unknown Message")

    async def _webhook_edit(self, request: web.Request, body: Any, app: str, token: str, message: str) -> tuple[int, Any]:
        inter, msg = self._webhook_message(app, token, message)
        if inter is None:
            return _error(404, 10015, "Unknown Webhook")
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        return self._edit(msg, body or {})

    async def _webhook_delete(self, request: web.Request, body: Any, app: str, token: str, message: str) -> tuple[int, Any]:
        inter, msg = self._webhook_message(app, token, message)
        if inter is None:
            return _error(404, 10015, "Unknown Webhook")
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        self.deleted.append(int(msg["id"]))
        return 204, None


class FakeDiscordThread:
    """The fake on its own event loop in a background thread, for code that runs `asyncio.run()` itself."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self.fake: FakeDiscord | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-discord", daemon=True)

    def __enter__(self) -> FakeDiscord:
        self._thread.start()
        self.fake = asyncio.run_coroutine_threadsafe(FakeDiscord(**self.kwargs).start(), self.loop).result(timeout=10)
        return self.fake

    def __exit__(self, *exc: object) -> None:
        assert self.fake is not None
        asyncio.run_coroutine_threadsafe(self.fake.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


__all__ = ["FakeDiscord", "FakeDiscordThread", "FakeUser", "Interaction", "Request"]
