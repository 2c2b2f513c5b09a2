"""The Drive v3 methods the fake serves, independent of the HTTP plumbing.

:class:`DriveApi` takes a parsed :class:`Request` and returns a :class:`Response`: it finds
the handler in a routing table (method + path pattern -> endpoint and handler), checks the
query parameters against the discovery document, injects faults and the write quota, and
counts. The handlers live in one module per resource (:mod:`.files`, :mod:`.uploads`,
:mod:`.listing`, :mod:`.changes`, :mod:`.batch`, :mod:`.drives`); the HTTP server and the
batch endpoint both feed :meth:`DriveApi.handle`, so a call inside a batch is handled exactly
like the same call on its own.
"""

from __future__ import annotations

import random
import re
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivemr.testing.fakedrive.config import (
    CONFIG_KEYS,
    WRITE_ENDPOINTS,
    FakeConfig,
    QuotaBucket,
    Stats,
    coerce_config,
)
from drivemr.testing.fakedrive.errors import (
    ApiError,
    auth_error,
    fault_error,
    invalid_value,
    rate_limited,
)
from drivemr.testing.fakedrive.fields import (
    FieldsSyntaxError,
    SchemaValidator,
    Selection,
    apply_fields,
    parse_fields,
)
from drivemr.testing.fakedrive.grants import Grants
from drivemr.testing.fakedrive.messages import (
    REASONS,
    Request,
    Response,
    error_response,
    json_response,
)
from drivemr.testing.fakedrive.metadata import render
from drivemr.testing.fakedrive.state import DriveState, FileRecord

__all__ = [
    "CONFIG_KEYS",
    "REASONS",
    "DriveApi",
    "FakeConfig",
    "Request",
    "Response",
    "Route",
    "coerce_config",
    "error_response",
    "json_response",
]

Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    """One line of the routing table."""

    method: str
    pattern: re.Pattern[str]
    """Matched against the whole path; named groups become the handler's keyword args."""
    endpoint: str
    handler: Handler
    path_params: frozenset[str] | None
    """Discovery parameters carried in the path; ``None``: do not check the query (an
    upload session's PUT carries only ``upload_id``)."""
    needs_query: str | None = None
    """A query parameter that must be present for this route to match."""


def route(
    method: str,
    path: str,
    endpoint: str,
    handler: Handler,
    path_params: frozenset[str] | None = frozenset(),
    needs_query: str | None = None,
) -> Route:
    """A :class:`Route` from a path template such as ``/drive/v3/files/{file_id}``."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(regex), endpoint, handler, path_params, needs_query)


class DriveApi:
    """Drive v3 over a :class:`DriveState`, with faults and accounting.

    Owns the configuration lock (``configure``); the state has its own lock, taken by the
    handlers; :class:`Stats` and :class:`QuotaBucket` lock themselves.
    """

    def __init__(self, state: DriveState, config: FakeConfig, discovery: dict[str, Any]) -> None:
        from drivemr.testing.fakedrive.batch import Batch
        from drivemr.testing.fakedrive.changes import Changes
        from drivemr.testing.fakedrive.drives import Drives
        from drivemr.testing.fakedrive.files import FileReads, FileWrites
        from drivemr.testing.fakedrive.listing import Listing
        from drivemr.testing.fakedrive.uploads import Uploads

        self.state = state
        self.config = config
        self.stats = Stats()
        self.grants = Grants()
        self._cfg_lock = threading.Lock()
        self.rng = random.Random(config.seed)
        self._bucket = QuotaBucket(config.write_rate, config.write_burst)
        self._validator = SchemaValidator(discovery["schemas"])
        self.file_props = frozenset(discovery["schemas"]["File"]["properties"])
        self._params = self._method_params(discovery)
        self.reads = FileReads(self)
        self.writes = FileWrites(self)
        self.uploads = Uploads(self)
        self.listing = Listing(self)
        self.changes = Changes(self)
        self.drives = Drives(self)
        self.batch = Batch(self)
        self.routes = self._routing_table()

    def _routing_table(self) -> list[Route]:
        """Method + path pattern -> endpoint and handler; the first match wins."""
        fid = frozenset({"fileId"})
        v3 = "/drive/v3"
        up = "/(?:resumable/)?upload/drive/v3"
        r, w, u = self.reads, self.writes, self.uploads
        return [
            route("GET", f"{v3}/files", "files.list", self.listing.files_list),
            route("POST", f"{v3}/files", "files.create", w.create),
            route("GET", f"{v3}/files/generateIds", "files.generateIds", r.generate_ids),
            route("DELETE", f"{v3}/files/trash", "files.emptyTrash", w.empty_trash),
            route("GET", f"{v3}/files/{{file_id}}", "files.get", r.get, fid),
            route("PATCH", f"{v3}/files/{{file_id}}", "files.update", w.update, fid),
            route("DELETE", f"{v3}/files/{{file_id}}", "files.delete", w.delete, fid),
            route("POST", f"{v3}/files/{{file_id}}/copy", "files.copy", w.copy, fid),
            route(
                "POST",
                f"{v3}/files/{{file_id}}/permissions",
                "permissions.create",
                self.drives.create_permission,
                fid,
            ),
            route("GET", f"{v3}/changes", "changes.list", self.changes.list),
            route(
                "GET",
                f"{v3}/changes/startPageToken",
                "changes.getStartPageToken",
                self.changes.start,
            ),
            route("GET", f"{v3}/about", "about.get", r.about),
            route("POST", f"{v3}/drives", "drives.create", self.drives.create),
            route("GET", f"{v3}/drives", "drives.list", self.drives.list),
            route(
                "GET",
                f"{v3}/drives/{{drive_id}}",
                "drives.get",
                self.drives.get,
                frozenset({"driveId"}),
            ),
            route("PUT", f"{up}/files", "upload", u.chunk, None, "upload_id"),
            route("PUT", f"{up}/files/{{file_id}}", "upload", u.chunk, None, "upload_id"),
            route("POST", f"{up}/files", "files.create", u.start),
            route("PATCH", f"{up}/files/{{file_id}}", "files.update", u.start, fid),
        ]

    # -- configuration ---------------------------------------------------------------------

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change knobs at runtime; unknown keys or bad values raise ValueError."""
        unknown = set(changes) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown fake-drive setting(s): {', '.join(sorted(unknown))}")
        coerced = {k: coerce_config(k, v) for k, v in changes.items()}
        with self._cfg_lock:
            for k, v in coerced.items():
                setattr(self.config, k, v)
            if "write_rate" in coerced or "write_burst" in coerced:
                self._bucket.set(self.config.write_rate, self.config.write_burst)
            if "seed" in coerced:
                self.rng = random.Random(self.config.seed)
            return self.config.as_dict()

    # -- shared services for the resource handlers ---------------------------------------------

    def selection(self, query: dict[str, str], schema: str, default: Selection) -> Selection:
        """The ``fields`` selector of a call, validated against ``schema``."""
        text = query.get("fields")
        if text is None:
            return default
        try:
            sel = parse_fields(text)
        except FieldsSyntaxError as exc:
            raise ApiError(
                400,
                "invalidParameter",
                f"Invalid field selection {text}",
                location="fields",
                detail=str(exc),
            ) from None
        self._validator.validate(sel, schema)
        return sel

    def file_response(
        self, req: Request, rec: FileRecord, sel: Selection, endpoint: str
    ) -> Response:
        return json_response(200, apply_fields(self.render(req, rec), sel), endpoint)

    def render(self, req: Request, rec: FileRecord) -> dict[str, Any]:
        return render(self.state, rec, req.account)

    # -- discovery-driven parameter checks ---------------------------------------------------

    @staticmethod
    def _method_params(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
        common = doc.get("parameters", {})
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for res_name, res in doc.get("resources", {}).items():
            for m_name, m in res.get("methods", {}).items():
                allowed = dict(common)
                allowed.update(m.get("parameters", {}))
                out[f"{res_name}.{m_name}"] = allowed
        return out

    def _check_params(
        self, endpoint: str, query: dict[str, str], path_params: frozenset[str]
    ) -> None:
        allowed = self._params.get(endpoint, {})
        for key, value in query.items():
            spec = allowed.get(key)
            if spec is None or key in path_params:
                raise ApiError(
                    400,
                    "invalid",
                    f'Invalid JSON payload received. Unknown name "{key}": Cannot bind query '
                    f"parameter. Field '{key}' could not be found in request message.",
                )
            kind = spec.get("type")
            if kind == "integer":
                try:
                    int(value)
                except ValueError:
                    raise ApiError(
                        400,
                        "invalid",
                        f"Invalid value at '{key}' (TYPE_INT32), \"{value}\"",
                        location=key,
                    ) from None
            elif kind == "boolean" and value.lower() not in ("true", "false"):
                raise ApiError(
                    400,
                    "invalid",
                    f"Invalid value at '{key}' (TYPE_BOOL), \"{value}\"",
                    location=key,
                )
            enum = spec.get("enum")
            if enum and value not in enum:
                raise invalid_value(key, f"{key} must be one of {enum}")
        if query.get("alt") == "proto":
            raise invalid_value("alt", "alt=proto is not modelled by the fake")

    # -- entry points ----------------------------------------------------------------------

    def handle(self, req: Request, top_level: bool = True) -> Response:
        """Serve one API call (a plain request or one part of a batch)."""
        if top_level:
            self.stats.count_request(len(req.body))
        req = self.grants.resolve(req)  # every token issued for a grant: the grant's account
        if (
            req.method == "POST"
            and req.headers.get("x-http-method-override", "").upper() == "GET"
            and req.body
        ):
            form = urllib.parse.parse_qsl(req.body.decode("utf-8", "replace"), True)
            merged = dict(req.query)
            merged.update(form)
            req = Request("GET", req.path, merged, req.headers, b"", req.base_url)
        try:
            found, args = self._route(req)
        except ApiError as err:
            self.stats.count_call("unknown")
            resp = error_response(err, "unknown")
            self._count(resp)
            return resp
        self.stats.count_call(found.endpoint)
        resp = self._run(found, args, req)
        resp.endpoint = resp.endpoint or found.endpoint
        self._count(resp)
        return resp

    def handle_batch(self, req: Request) -> Response:
        """``POST /batch/drive/v3``: see :class:`~drivemr.testing.fakedrive.batch.Batch`."""
        self.stats.count_request(len(req.body))
        self.stats.count_call("batch")
        try:
            self.inject_faults("batch")
            resp = self.batch.run(req)
        except ApiError as err:
            resp = error_response(err, "batch")
        self._count(resp)
        return resp

    def _count(self, resp: Response) -> None:
        self.stats.count_response(resp.status, resp.drop, len(resp.body))

    def inject_faults(self, endpoint: str) -> None:
        """The configured refusals: revoked grant, random errors, the write quota."""
        cfg = self.config
        if cfg.auth_error:
            raise auth_error()
        if cfg.fault_rate > 0 and self.rng.random() < cfg.fault_rate:
            self.stats.count_fault("fault_errors")
            raise fault_error(self.rng.choice(cfg.fault_codes))
        if endpoint in WRITE_ENDPOINTS and not self._bucket.take():
            self.stats.count_fault("rate_limited")
            raise rate_limited()

    def _run(self, found: Route, args: dict[str, str], req: Request) -> Response:
        cfg = self.config
        endpoint = found.endpoint
        try:
            if found.path_params is not None:
                self._check_params(endpoint, req.query, found.path_params)
                if req.query.get("alt") == "media" and endpoint != "files.get":
                    raise invalid_value("alt", "alt=media is only served by files.get")
            self.inject_faults(endpoint)
            resp = found.handler(req, **args)
        except ApiError as err:
            return error_response(err, endpoint)
        ack_endpoint = resp.endpoint or endpoint
        if (
            resp.status < 300
            and cfg.lost_ack_rate > 0
            and ack_endpoint in cfg.lost_ack_methods
            and self.rng.random() < cfg.lost_ack_rate
        ):
            self.stats.count_fault("lost_acks")
            resp.drop = True
        return resp

    def _route(self, req: Request) -> tuple[Route, dict[str, str]]:
        """The matching route and its path arguments, or Drive's 404 / the fake's 501."""
        for r in self.routes:
            if r.method != req.method or (r.needs_query and r.needs_query not in req.query):
                continue
            m = r.pattern.fullmatch(req.path)
            if m is not None:
                return r, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
        rest = req.path[len("/drive/v3/") :] if req.path.startswith("/drive/v3/") else ""
        resource = rest.split("/", 1)[0]
        if resource and resource in {k.split(".", 1)[0] for k in self._params}:
            raise ApiError(
                501,
                "notImplemented",
                f"{req.method} /drive/v3/{rest} is a Drive method the fake does not model.",
            )
        raise ApiError(404, "notFound", f"Not Found: {req.method} {req.path}")
