"""The FastAPI application: predictions, stored materials, the dataset map, and the pages.

Endpoints (JSON unless said otherwise; OpenAPI schema at ``/openapi.json``, an offline reference at ``/docs``):

* ``POST /predict`` — a CIF or POSCAR as a multipart upload (``file``) or pasted text (form field ``text``);
  returns predicted IPA and RPA spectra (trace of Im ε and Re ε, n, k, α in cm⁻¹, R, loss; photon energy in eV)
  and the verdict "is IPA good enough". Bad input → 4xx with ``{"detail": "<name>: <problem>"}`` (one line).
* ``GET /materials/{mat_id}`` — a stored GPAW record and its spectra (``?predict=true`` adds the model's).
* ``GET /map`` — UMAP coordinates of the sc model's latent embeddings of the dataset, SC per material.
* ``GET /health``, ``GET /models`` — status, model cards and the models' training domain.
* Pages: ``/`` (predict), ``/ui/map`` (the map), ``/ui/materials/{mat_id}`` (one material). Plotly's JS is
  served from ``/static/plotly.min.js``: the pages need no internet.

Hardening: uploads are read, validated and turned into graphs in killable worker processes with a memory limit
(:mod:`.workers`), so no input can stop ``/health`` or other requests; the request body must arrive within
``body_timeout`` seconds (else 408); every error is one line of JSON ``{"detail": ...}`` naming the input, never a
server path; every response carries ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and a
``Content-Security-Policy`` that allows only this server's own scripts (no inline script, no eval).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..targets import LEVELS
from . import DEFAULT_MAP_PATH, STATIC_DIR

log = logging.getLogger(__name__)

#: Largest accepted upload or pasted text (bytes); a CIF of a 64-atom cell is a few kB.
DEFAULT_MAX_UPLOAD = 256 * 1024
#: Allowed material ids (no path separators: the id becomes a file name in the store); ``\Z``, not ``$``, so a
#: trailing newline does not pass.
MAT_ID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
#: Seconds within which a request body must arrive completely (else 408).
DEFAULT_BODY_TIMEOUT = 10.0
#: Headers added to every response: no MIME sniffing, no framing, only this server's own scripts and styles
#: (Plotly sets inline style attributes, hence ``style-src 'unsafe-inline'``; scripts stay strict).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}


#: Allowance for the multipart envelope (boundaries, headers, other form fields) on top of the structure.
MULTIPART_OVERHEAD = 16 * 1024


class _SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every HTTP response."""

    def __init__(self, app: Any):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _BodyLimit:
    """ASGI middleware: refuse an upload before its body is read — 411 without ``Content-Length`` (a chunked
    body of unknown size), 413 when the declared size exceeds ``limit`` bytes — and read the body with a
    deadline: a body that has not arrived completely within ``timeout`` seconds gets 408 (a stalled upload
    does not hold a connection and a request slot open). (The HTTP server enforces that the body is as long
    as declared.)"""

    def __init__(
        self, app: Any, *, limit: int, paths: tuple[str, ...], timeout: float = DEFAULT_BODY_TIMEOUT
    ):
        self.app, self.limit, self.paths, self.timeout = app, int(limit), paths, float(timeout)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths and scope["method"] == "POST":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            status, detail = None, ""
            if length is None or not length.isdigit():
                status, detail = 411, "request: Content-Length required (chunked uploads are not accepted)"
            elif int(length) > self.limit:
                status, detail = 413, f"request: {int(length)} bytes exceed the limit of {self.limit}"
            if status is not None:
                response = JSONResponse({"detail": detail}, status_code=status)
                await response(scope, receive, send)
                return
            try:
                body = await asyncio.wait_for(self._read_body(receive), self.timeout)
            except TimeoutError:
                detail = f"request: body not received within {self.timeout:g} s"
                await JSONResponse({"detail": detail}, status_code=408)(scope, receive, send)
                return
            if body is None:  # the client went away
                return
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _read_body(receive: Any) -> bytes | None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)


def _warm_up(predictor: Any) -> None:
    """One prediction of diamond Si at start, so the first request does not pay torch's first-call costs."""
    from pymatgen.core import Lattice, Structure

    si = Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]]).get_primitive_structure()
    res = predictor.predict_one(si, "warm-up")
    if not res.ok:  # pragma: no cover - would mean a broken model
        log.warning("warm-up prediction failed: %s", res.error)


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


class _State:
    """What the app holds: the predictor (loaded once, lazily), the store and the map."""

    def __init__(
        self,
        predictor: Any,
        store: Any,
        map_path: Path,
        max_upload: int,
        levels: tuple[str, ...],
        workers: dict[str, Any] | None = None,
    ):
        self._predictor = predictor
        self._store = store
        self.map_path = Path(map_path)
        self.max_upload = int(max_upload)
        self.levels = levels
        self.worker_options = dict(workers or {})
        self._lock = threading.RLock()
        self._batcher: Any = None
        self._pool: Any = None
        self._map: dict | None = None
        self._map_mtime: float | None = None

    @property
    def predictor(self):
        if self._predictor is None:
            with self._lock:
                if self._predictor is None:
                    from ..predict import Predictor

                    self._predictor = Predictor.from_pretrained(self.levels, sc=True)
        return self._predictor

    @property
    def batcher(self):
        """The :class:`~.batching.MicroBatcher` in front of the predictor (started on first use)."""
        if self._batcher is None:
            with self._lock:
                if self._batcher is None:
                    from .batching import MicroBatcher

                    self._batcher = MicroBatcher(self.predictor)
        return self._batcher

    @property
    def pool(self):
        """The :class:`~.workers.PreparePool` that reads uploads (started on first use)."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    from .workers import InlinePool, PreparePool

                    p = self.predictor
                    opts = dict(self.worker_options)
                    # workers=0: the in-process baseline of bench/service (unsafe: no isolation)
                    pool = InlinePool if opts.get("workers", 1) == 0 else PreparePool
                    if pool is InlinePool:
                        opts = {"threads": opts.get("threads", 4)}
                    self._pool = pool(p.featurizers, p.domain, max_atoms=p.max_atoms, **opts)
        return self._pool

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def store(self):
        if self._store is None:
            from ..data.store import Store

            self._store = Store()
        return self._store

    def map(self) -> dict:
        from .mapdata import load_map

        mtime = self.map_path.stat().st_mtime if self.map_path.exists() else None
        if self._map is None or mtime != self._map_mtime:
            self._map = load_map(self.map_path)
            self._map_mtime = mtime
        return self._map


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    app.state.optiladder.close()


def create_app(
    predictor: Any = None,
    *,
    store: Any = None,
    map_path: str | Path = DEFAULT_MAP_PATH,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    levels: tuple[str, ...] = LEVELS,
    preload: bool = False,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    workers: dict[str, Any] | None = None,
) -> FastAPI:
    """Build the app.

    ``predictor``: an :class:`optiladder.predict.Predictor` (default: the shipped models, loaded on first use or
    at start with ``preload``). ``store``: an :class:`optiladder.data.store.Store` (default: the dataset).
    ``map_path``: the map file. ``max_upload``: size limit of a structure in bytes (larger → 413).
    ``body_timeout``: seconds for a request body to arrive (else 408). ``workers``: options of the
    :class:`~.workers.PreparePool` (``workers``, ``timeout`` s, ``memory_mb``); ``{"workers": 0}`` reads in
    threads of the server process instead (the unsafe baseline the benchmark compares with).
    """
    state = _State(predictor, store, Path(map_path), max_upload, tuple(levels), workers)
    app = FastAPI(
        title="optiladder",
        version=__version__,
        description=(
            "Optical spectra of crystals predicted by graph networks (OptiMate, CGAT) trained on GPAW IPA/RPA spectra. "
            "Photon energy in eV, ε dimensionless, α in cm⁻¹."
        ),
        docs_url=None,  # FastAPI's Swagger page loads its JS from a CDN; /docs is an offline page instead
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.optiladder = state
    app.add_middleware(
        _BodyLimit, limit=max_upload + MULTIPART_OVERHEAD, paths=("/predict",), timeout=body_timeout
    )
    app.add_middleware(_SecurityHeaders)
    if preload:
        _warm_up(state.predictor)
        state.pool  # noqa: B018  (start the worker processes now)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ---- pages ---------------------------------------------------------------------------------
    def _page(name: str) -> FileResponse:
        return FileResponse(STATIC_DIR / name, media_type="text/html")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return _page("index.html")

    @app.get("/ui/map", include_in_schema=False)
    def map_page() -> FileResponse:
        return _page("map.html")

    @app.get("/ui/materials/{mat_id}", include_in_schema=False)
    def material_page(mat_id: str) -> FileResponse:
        return _page("material.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # no icon; answering keeps browsers' consoles free of 404s

    @app.get("/docs", include_in_schema=False)
    def docs_page() -> FileResponse:
        return _page("docs.html")

    # ---- API -----------------------------------------------------------------------------------
    @app.get("/health", tags=["service"])
    def health() -> dict:
        """Service status: version and whether the models are loaded."""
        return {"status": "ok", "version": __version__, "models_loaded": state._predictor is not None}

    @app.get("/models", tags=["service"])
    def models() -> dict:
        """The model cards of the loaded models (data, splits, test metrics, parent, date, checksum)."""
        p = state.predictor
        d = p.domain
        domain = None if d is None else {**d.to_dict(), "max_atoms_accepted": p.max_atoms}
        return {"threshold": p.threshold, "cards": p.cards(), "domain": domain}

    @app.post("/predict", tags=["predict"])
    async def predict(
        request: Request,
        file: Annotated[UploadFile | None, File(description="CIF or POSCAR file")] = None,
        text: Annotated[str | None, Form(description="CIF or POSCAR text (instead of a file)")] = None,
        filename: Annotated[
            str | None, Form(description="Name for pasted text; its ending selects the format")
        ] = None,
        stride: Annotated[int, Query(ge=1, le=20, description="Return every stride-th grid point")] = 1,
        optics: Annotated[bool, Query(description="Include n, k, α, R and loss")] = True,
    ) -> JSONResponse:
        """Predict the IPA and RPA spectra of one crystal and say whether IPA is good enough for it.

        Send either ``file`` (multipart upload) or ``text``. Returns per level ``omega_eV`` (eV), ``eps_im``,
        ``eps_re`` (Kramers–Kronig), ``n``, ``k``, ``alpha_cm`` (cm⁻¹), ``R``, ``loss`` on the 0–20 eV grid, the
        predicted ``sc_rpa_ipa`` and ``ipa_good_enough`` (SC ≥ threshold).
        """
        if file is not None and text:
            raise HTTPException(400, "request: send either a file or text, not both")
        if file is not None:
            raw = await file.read(state.max_upload + 1)
            name = Path(file.filename or "upload").name
        elif text is not None:
            raw = text.encode()
            name = Path(filename).name if filename else "pasted"
        else:
            raise HTTPException(400, "request: no structure (send a file or text)")
        if len(raw) > state.max_upload:
            raise HTTPException(413, f"{name}: larger than the limit of {state.max_upload} bytes")
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(422, f"{name}: not a text file (CIF or POSCAR expected)") from None
        from starlette.concurrency import run_in_threadpool

        from .workers import WorkerFailure

        # loading the models and starting the workers (first request only) must not block the event loop
        p = state._predictor or await run_in_threadpool(lambda: state.predictor)
        pool = state._pool or await run_in_threadpool(lambda: state.pool)
        try:  # read and build graphs in a killable worker process; the forward pass is batched across requests
            res, graphs = await asyncio.wrap_future(pool.submit(content, name))
        except WorkerFailure as exc:
            raise HTTPException(422, _one_line(str(exc))) from None
        if not res.ok:
            raise HTTPException(422, _one_line(res.error))
        res = await asyncio.wrap_future(state.batcher.submit_prepared(res, graphs))

        def render() -> bytes:  # ~240 kB of JSON: encoded off the event loop, so /health never waits for it
            out = res.to_dict(optics=optics, stride=stride)
            out["models"] = {k: v.get("full_name", k) for k, v in p.cards().items()}
            return JSONResponse(out).body

        return Response(await run_in_threadpool(render), media_type="application/json")

    @app.get("/materials/{mat_id}", tags=["data"])
    def material(
        mat_id: str,
        predict: Annotated[bool, Query(description="Add the model's predictions for this structure")] = False,
    ) -> dict:
        """A stored record (GPAW, gpaw-pbe-v1) with its spectra: per level the trace of Im ε and Re ε, the
        x/y/z components of Im ε, and n, k, α (cm⁻¹), R, loss of the trace; ``sc_rpa_ipa`` of the DFT spectra."""
        from ..data.splits import split_of
        from ..engine.records import RecordError, record_spectra
        from ..spectra import similarity_coefficient
        from ..targets import Grid, record_traces

        if not MAT_ID_RE.match(mat_id):
            raise HTTPException(400, f"{_one_line(mat_id)[:80]!r}: not a valid material id")
        if mat_id not in state.store:
            raise HTTPException(404, f"{mat_id}: no such material in the dataset")
        try:
            rec = state.store.get(mat_id)
        except RecordError as exc:  # the problem, without the server's path to the file
            raise HTTPException(
                500, _one_line(f"{mat_id}: stored record is invalid ({exc.problem})")
            ) from None
        sp = record_spectra(rec)
        on_grid = record_traces(rec)
        out: dict[str, Any] = {
            "mat_id": mat_id,
            "formula": rec["formula"],
            "nsites": rec["nsites"],
            "split": rec.get("split") or split_of(mat_id),
            "spacegroup": rec.get("spacegroup"),
            "gap_indirect_eV": rec.get("gap_indirect"),
            "gap_direct_eV": rec.get("gap_direct"),
            "protocol": rec["protocol"].get("name"),
            "code": rec.get("code"),
            "structure": rec["structure"],
            "sc_rpa_ipa": round(float(similarity_coefficient(on_grid[LEVELS[1]], on_grid[LEVELS[0]])), 4),
            "spectra": {},
        }
        for lv, s in sp.items():
            table = s.table()
            d = {k: np.round(v, 6).tolist() for k, v in table.items()}
            d.update({f"eps_im_{c}": np.round(s.im[c], 6).tolist() for c in s.components})
            d["eps_inf"] = round(s.eps_inf, 4)
            out["spectra"][lv] = d
        if predict:
            from pymatgen.core import Structure

            p = state.predictor
            res = p.predict_one(Structure.from_dict(rec["structure"]), mat_id)
            if res.ok:
                pred = res.to_dict(optics=False, stride=2)
                pred["sc_vs_dft"] = {}
                for lv, ps in res.spectra.items():  # on the model's own grid
                    dft = record_traces(rec, Grid.of(ps.omega), (lv,))[lv]
                    pred["sc_vs_dft"][lv] = round(
                        float(similarity_coefficient(ps.trace_im(), dft, ps.omega)), 4
                    )
                out["prediction"] = pred
            else:
                out["prediction"] = {"ok": False, "error": res.error}
        return out

    @app.get("/map", tags=["data"])
    def dataset_map(
        embeddings: Annotated[bool, Query(description="Include the latent vectors (large)")] = False,
    ) -> dict:
        """The dataset map: per material id, formula, split, 2-D UMAP coordinates of the sc model's pooled
        embedding, DFT SC[RPA; IPA] (the colour) and the predicted one."""
        from .mapdata import MapError

        try:
            data = dict(state.map())
        except MapError as exc:  # the problem without the server's path to the map file
            log.warning("%s", exc)
            problem = str(exc).split(": ", 1)[-1]
            raise HTTPException(503, _one_line(f"map: {problem}")) from None
        if not embeddings:
            data.pop("embedding", None)
        return data

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": _one_line(str(exc.detail))}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        # a bug: logged in full here, answered in one line without paths or a traceback
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: Any) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path"))
        msg = f"{where or 'request'}: {first.get('msg', 'invalid request')}"
        return JSONResponse({"detail": _one_line(msg)}, status_code=422)

    return app
