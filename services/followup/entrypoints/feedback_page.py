"""The satisfaction page customers reach from a satisfaction request's link: "how did we do?".

aiohttp on its own port (CRM_FEEDBACK_PORT, 8093), run by the service's runtime beside gRPC as
a worker and stopped with it. The page only translates: the signed token and the form go to
`SatisfactionSurvey`, its answer comes back as HTML. Plain HTML forms (no JavaScript needed),
one column that fits a phone, nothing internal shown (no promise text, owner, team or date:
the promise in the customer's words, by kind), in the customer's language as far as we know it
(`?lang=`, else the browser's Accept-Language; English and Spanish). The token is in the path,
so nothing that would carry it elsewhere is allowed: no access log, no referrer, no caching.
"""

from __future__ import annotations

import asyncio
import html
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from aiohttp import web

from followup.domain import feedback, notices
from followup.usecases.commands import SatisfactionSurvey, SurveyState, SurveyView

log = structlog.get_logger(__name__)

MAX_BODY = 64 * 1024  # a 2,000-character comment, form-encoded, with room to spare

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

WORDS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "title": "How did we do?",
        "intro": "Thank you for letting us help you.",
        "question": "Your score",
        "1": "1 - Very poor",
        "2": "2 - Poor",
        "3": "3 - Fair",
        "4": "4 - Good",
        "5": "5 - Excellent",
        "comment": "Anything you would like to tell us? (optional)",
        "send": "Send my answer",
        "thanks_title": "Thank you!",
        "thanks": "Your answer is recorded. It helps us keep our promises.",
        "answered_title": "Already answered",
        "answered": "You have already answered. Thank you!",
        "invalid_title": "This link is not valid any more",
        "invalid": (
            "It may have expired, or part of it may be missing. Nothing was recorded. "
            "If you would like to tell us something, please contact us."
        ),
        "problems": "Please check your answer:",
        "score_missing": "Please choose a score from 1 to 5.",
        "score_range": "The score must be a whole number from 1 to 5.",
        "comment_long": "Your comment is too long: 2,000 characters at most.",
        "comment_control": "Your comment holds characters we cannot accept.",
    },
    "es": {
        "title": "¿Qué tal lo hicimos?",
        "intro": "Gracias por dejarnos ayudarle.",
        "question": "Su puntuación",
        "1": "1 - Muy mal",
        "2": "2 - Mal",
        "3": "3 - Regular",
        "4": "4 - Bien",
        "5": "5 - Excelente",
        "comment": "¿Quiere contarnos algo más? (opcional)",
        "send": "Enviar mi respuesta",
        "thanks_title": "¡Gracias!",
        "thanks": "Hemos registrado su respuesta. Nos ayuda a cumplir lo que prometemos.",
        "answered_title": "Ya respondida",
        "answered": "Ya nos ha respondido. ¡Gracias!",
        "invalid_title": "Este enlace ya no es válido",
        "invalid": (
            "Puede haber caducado o estar incompleto. No se ha registrado nada. "
            "Si quiere contarnos algo, póngase en contacto con nosotros."
        ),
        "problems": "Revise su respuesta:",
        "score_missing": "Elija una puntuación de 1 a 5.",
        "score_range": "La puntuación debe ser un número entero de 1 a 5.",
        "comment_long": "Su comentario es demasiado largo: 2.000 caracteres como máximo.",
        "comment_control": "Su comentario contiene caracteres que no podemos aceptar.",
    },
}
assert set(WORDS) == set(notices.LANGUAGES)

STYLE = """
body{margin:0;font:17px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1d2330;background:#f3f5f8}
main{box-sizing:border-box;max-width:34rem;margin:0 auto;padding:1.25rem}
.card{background:#fff;border-radius:12px;padding:1.25rem;box-shadow:0 1px 4px #0002}
h1{font-size:1.5rem;margin:0 0 .75rem}
fieldset{border:0;padding:0;margin:1rem 0}
legend{font-weight:600;margin-bottom:.5rem}
label.score{display:flex;align-items:center;gap:.6rem;padding:.7rem .8rem;margin:.4rem 0;
border:1px solid #c9d1dc;border-radius:8px;min-height:44px;box-sizing:border-box}
label.score input{width:1.3rem;height:1.3rem}
textarea{box-sizing:border-box;width:100%;min-height:7rem;font:inherit;padding:.6rem;
border:1px solid #c9d1dc;border-radius:8px}
button{width:100%;min-height:48px;margin-top:1rem;font:inherit;font-weight:600;color:#fff;
background:#1f5fbf;border:0;border-radius:8px}
.problems{background:#fdecea;border-left:4px solid #c62828;padding:.6rem .8rem;margin:1rem 0}
"""


@dataclass(frozen=True)
class Rendered:
    status: int
    body: str


def choose_language(query_lang: str, accept_language: str) -> str:
    """`?lang=` first, then the browser's Accept-Language by its q-values, else English."""
    wanted = [query_lang] if query_lang else []
    ranked: list[tuple[float, int, str]] = []
    for n, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            ranked.append((-q, n, tag))
    wanted += [tag for _, _, tag in sorted(ranked)]
    return notices.language(*wanted)


def _page(lang: str, title: str, content: str) -> str:
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f'<body><main><div class="card">{content}</div></main></body></html>'
    )


def render(view: SurveyView, lang: str, score: str = "", comment: str = "") -> Rendered:
    """The HTML for what the survey said; a bad answer keeps what the customer typed."""
    w = WORDS[lang]
    if view.state is SurveyState.INVALID:
        text = f"<h1>{w['invalid_title']}</h1><p>{w['invalid']}</p>"
        return Rendered(404, _page(lang, w["invalid_title"], text))
    if view.state is SurveyState.ANSWERED:
        text = f"<h1>{w['answered_title']}</h1><p>{w['answered']}</p>"
        return Rendered(200, _page(lang, w["answered_title"], text))
    if view.state is SurveyState.THANKS:
        text = f"<h1>{w['thanks_title']}</h1><p>{w['thanks']}</p>"
        return Rendered(200, _page(lang, w["thanks_title"], text))
    parts = [f"<h1>{w['title']}</h1>"]
    if view.kind is not None and not view.discreet:
        parts.append(f"<p>{html.escape(notices.what_we_did(view.kind, lang))}</p>")
    else:
        parts.append(f"<p>{w['intro']}</p>")
    if view.problems:
        items = "".join(f"<li>{w[p]}</li>" for p in view.problems)
        parts.append(
            f'<div class="problems" role="alert"><p>{w["problems"]}</p><ul>{items}</ul></div>'
        )
    radios = "".join(
        f'<label class="score"><input type="radio" name="score" value="{n}"'
        f"{' checked' if score == str(n) else ''}> {w[str(n)]}</label>"
        for n in range(feedback.MIN_SCORE, feedback.MAX_SCORE + 1)
    )
    parts.append(
        f'<form method="post" action="?lang={lang}">'
        f"<fieldset><legend>{w['question']}</legend>{radios}</fieldset>"
        f'<label for="comment">{w["comment"]}</label>'
        f'<textarea id="comment" name="comment" maxlength="{feedback.MAX_COMMENT}">'
        f"{html.escape(comment)}</textarea>"
        f'<button type="submit">{w["send"]}</button></form>'
    )
    return Rendered(422 if view.problems else 200, _page(lang, w["title"], "".join(parts)))


class FeedbackPage:
    """The page's HTTP server, as a runtime worker: `run()` serves until `stop()`."""

    def __init__(self, survey: SatisfactionSurvey, host: str, port: int) -> None:
        self._survey = survey
        # Bound here, at build time: a port already taken stops the service from booting, as
        # gRPC's does, instead of leaving a page that never answers (port 0 picks a free one).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family)
        self._socket.setblocking(False)
        self.port = int(self._socket.getsockname()[1])
        self.started = asyncio.Event()
        self._stopping = asyncio.Event()
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.router.add_get("/feedback/{token}", self._show)
        self.app.router.add_post("/feedback/{token}", self._answer)
        self.app.router.add_get("/healthz", self._health)

    async def run(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)  # the path holds the signed token
        await runner.setup()
        try:
            site = web.SockSite(runner, self._socket)
            await site.start()
            self.started.set()
            log.info("feedback_page_started", port=self.port)
            await self._stopping.wait()
        finally:
            self.started.clear()
            await runner.cleanup()

    def stop(self) -> None:
        self._stopping.set()

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _show(self, request: web.Request) -> web.Response:
        lang = _lang(request)
        view = await self._survey.view(request.match_info["token"])
        return _respond(render(view, lang))

    async def _answer(self, request: web.Request) -> web.Response:
        lang = _lang(request)
        form = await request.post()
        score, comment = form.get("score", ""), form.get("comment", "")
        score = score if isinstance(score, str) else ""
        comment = comment if isinstance(comment, str) else ""
        view = await self._survey.answer(request.match_info["token"], score, comment)
        return _respond(render(view, lang, score, comment))


def _lang(request: web.Request) -> str:
    return choose_language(
        request.query.get("lang", ""), request.headers.get("Accept-Language", "")
    )


def _respond(page: Rendered) -> web.Response:
    return web.Response(
        status=page.status,
        text=page.body,
        content_type="text/html",
        charset="utf-8",
        headers=HEADERS,
    )
