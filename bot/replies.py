"""What a command answers, platform-neutral: text, recommendation cards and buttons.

Front ends turn a `Reply` into their own form (console text, Telegram HTML, Discord embeds). The
console form is `render_text`: each pick is a line `N. Title` with indented detail lines, its
explanations indented and starting `why:` (the same shape as `python -m inference recommend`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from inference.explain import Recommendation

BUTTON_ACTIONS = ("more", "seen", "not_interested", "subscribe")


@dataclass(frozen=True, slots=True)
class Button:
    """A button; per-pick ones carry the pick's MAL id and its number in the reply."""

    action: str
    label: str
    mal_id: int | None = None
    position: int | None = None

    def console_command(self) -> str:
        if self.action == "seen":
            return f"/seen {self.position}"
        if self.action == "not_interested":
            return f"/notinterested {self.position}"
        return f"/{self.action}"

    def payload(self) -> str:
        """Small callback data (Telegram allows 64 bytes): "seen:5114", "more"."""
        return self.action if self.mal_id is None else f"{self.action}:{self.mal_id}"


_MAL_ID = re.compile(r"[1-9][0-9]{0,8}")


def parse_payload(payload: str) -> tuple[str, int | None] | None:
    """The (action, MAL id) a button payload carries, or None if it is not one of ours."""
    action, _, rest = payload.partition(":")
    if action not in BUTTON_ACTIONS:
        return None
    if not rest:
        return (action, None) if action in ("more", "subscribe") else None
    # ASCII digits only: str.isdigit() accepts "²" and other digits that int() refuses.
    if action not in ("seen", "not_interested") or _MAL_ID.fullmatch(rest) is None:
        return None
    return action, int(rest)


@dataclass(slots=True)
class Reply:
    lines: list[str] = field(default_factory=list)
    heading: str | None = None
    cards: list[Recommendation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    error: bool = False

    @classmethod
    def failure(cls, message: str) -> Reply:
        return cls(lines=[message], error=True)

    @classmethod
    def text(cls, *lines: str) -> Reply:
        return cls(lines=list(lines))

    def card_buttons(self, position: int) -> list[Button]:
        """The buttons of pick `position` (1-based)."""
        rec = self.cards[position - 1]
        return [
            Button("seen", "Seen it", mal_id=rec.mal_id, position=position),
            Button("not_interested", "Not interested", mal_id=rec.mal_id, position=position),
        ]


def score_text(rec: Recommendation) -> str | None:
    return None if rec.predicted_score is None else f"predicted score {rec.predicted_score:.1f}"


def detail_lines(rec: Recommendation) -> list[str]:
    """The lines under a pick's title: its name in the other language (when it helps), facts,
    genres, predicted score, link (no "why")."""
    lines = [f"({rec.title_other})"] if rec.title_other else []
    facts = rec.facts_line()
    if facts:
        lines.append(facts)
    if rec.genres:
        lines.append(", ".join(rec.genres))
    score = score_text(rec)
    if score:
        lines.append(score)
    return lines


def render_text(reply: Reply) -> str:
    """The console's form of a reply."""
    out: list[str] = []
    if reply.heading:
        out.append(reply.heading)
    out.extend(reply.lines)
    for position, rec in enumerate(reply.cards, start=1):
        out.append(f"{position}. {rec.title}")
        out.extend(f"   {line}" for line in detail_lines(rec))
        out.append(f"   {rec.url}")
        out.extend(f"   why: {why}" for why in rec.why)
    out.extend(f"note: {note}" for note in reply.notes)
    # Replies without follow-ups (/similar, groups) have no buttons to show.
    if reply.cards and reply.buttons:
        out.append(
            "buttons: /more · /seen N · /notinterested N"
            + (" · /subscribe" if any(b.action == "subscribe" for b in reply.buttons) else "")
        )
    return "\n".join(out)
