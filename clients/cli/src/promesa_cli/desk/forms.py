"""The desk's modal forms: one screen that lays out fields on one line each (so a form fits in
24 rows), sends them, and stays open with every problem shown beside the field the service
named, so an agent corrects the form instead of starting over."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from promesa_client import errors

Values = dict[str, str | bool]
# Sends the form; returns what to tell the agent once it went through.
Submit = Callable[[Values], Awaitable[str]]


@dataclass(frozen=True)
class Field:
    """One line of a form: a text input, a choice (`choices` as (label, value)) or a box."""

    name: str
    label: str
    placeholder: str = ""
    value: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    checkbox: bool = False  # `placeholder` is then the box's label
    required: bool = False


class FieldProblem(Exception):
    """A value the desk refuses before sending anything (a due time it cannot read)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class FormScreen(ModalScreen[str | None]):
    """A form over the desk. Enter moves to the next field and sends from the last one,
    Ctrl+S sends from anywhere, Escape cancels; dismissed with the success message, or None."""

    DEFAULT_CSS = """
    FormScreen { align: center middle; }
    FormScreen > Vertical {
        width: 76; height: auto; max-height: 22;
        border: round $accent; padding: 0 1; background: $panel;
    }
    FormScreen .title { text-style: bold; width: 100%; }
    FormScreen .subject { color: $text-muted; width: 100%; }
    FormScreen .row { height: 1; margin-top: 1; }
    FormScreen .label { width: 14; }
    FormScreen .label.-invalid { color: $error; text-style: bold; }
    FormScreen Input, FormScreen Select { width: 1fr; }
    FormScreen Checkbox { width: auto; }
    FormScreen #problems { color: $error; height: auto; margin-top: 1; }
    FormScreen #problems.-empty { display: none; }
    FormScreen .buttons { height: 1; margin-top: 1; align-horizontal: right; }
    FormScreen Button { margin-left: 2; min-width: 10; }
    FormScreen .hint { color: $text-muted; height: 1; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Send"),
    ]

    def __init__(
        self,
        title: str,
        subject: str,
        fields: Sequence[Field],
        submit: Submit,
        paths: Mapping[str, str] | None = None,
    ) -> None:
        """`paths` maps a field path the service names in a violation (`new_owner_id`) to
        the form field it comes from, so the problem is shown against what the agent typed."""
        super().__init__()
        self.form_title = title
        self.subject = subject
        self.fields = tuple(fields)
        self._submit = submit
        self._paths = dict(paths or {})
        self.problems: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.form_title, classes="title")
            yield Label(self.subject, classes="subject", markup=False)
            for field in self.fields:
                with Horizontal(classes="row"):
                    yield Label(field.label, id=f"label-{field.name}", classes="label")
                    yield self._widget(field)
            yield Static("", id="problems", classes="-empty", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Send", id="send", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)
            yield Label("Enter: next field · Ctrl+S: send · Esc: cancel", classes="hint")

    def _widget(self, field: Field) -> Widget:
        wid = f"field-{field.name}"
        if field.choices:
            return Select(
                field.choices,
                value=field.value or field.choices[0][1],
                allow_blank=False,
                compact=True,
                id=wid,
            )
        if field.checkbox:
            return Checkbox(field.placeholder, value=field.value == "yes", compact=True, id=wid)
        return Input(value=field.value, placeholder=field.placeholder, compact=True, id=wid)

    def values(self) -> Values:
        out: Values = {}
        for field in self.fields:
            widget = self.query_one(f"#field-{field.name}")
            if isinstance(widget, Input):
                out[field.name] = widget.value.strip()
            elif isinstance(widget, Checkbox):
                out[field.name] = widget.value
            elif isinstance(widget, Select):
                out[field.name] = str(widget.value)
        return out

    @on(Input.Submitted)
    def _next_or_send(self, event: Input.Submitted) -> None:
        inputs = [f for f in self.fields if not f.choices and not f.checkbox]
        if inputs and event.input.id == f"field-{inputs[-1].name}":
            self.action_submit()
        else:
            self.focus_next()

    @on(Button.Pressed, "#send")
    def _send_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        self.run_worker(self._send(), exclusive=True, group="form")

    async def _send(self) -> None:
        values = self.values()
        missing = [
            FieldProblem(f.name, "required")
            for f in self.fields
            if f.required and not values[f.name]
        ]
        if missing:
            self.show_problems(missing)
            return
        try:
            done = await self._submit(values)
        except FieldProblem as problem:
            self.show_problems([problem])
        except errors.InvalidArgument as exc:
            self.show_problems(
                [FieldProblem(v.field, v.description) for v in exc.field_violations]
                or [FieldProblem("", exc.message)]
            )
        except errors.PromesaError as exc:
            # Not the form's fault (a stale etag, no permission, a service away): the agent
            # reads why and decides; the form keeps what was typed.
            self.show_problems([FieldProblem("", f"{type(exc).__name__}: {exc.message}")])
        else:
            self.dismiss(done)

    def show_problems(self, problems: Sequence[FieldProblem]) -> None:
        """Marks each named field's label and lists every problem, its field first."""
        for field in self.fields:
            self.query_one(f"#label-{field.name}").remove_class("-invalid")
        lines = []
        for problem in problems:
            name = self._paths.get(problem.field, problem.field)
            known = next((f for f in self.fields if f.name == name), None)
            if known is not None:
                self.query_one(f"#label-{known.name}").add_class("-invalid")
                lines.append(f"{known.label.strip()}: {problem.message}")
            elif problem.field:
                lines.append(f"{problem.field}: {problem.message}")
            else:
                lines.append(problem.message)
        self.problems = lines
        box = self.query_one("#problems", Static)
        box.update("\n".join(lines))
        box.set_class(not lines, "-empty")
