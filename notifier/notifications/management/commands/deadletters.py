"""``manage.py deadletters list|replay``: inspect and replay dead letters and failed deliveries.

``list`` shows the messages in ``notify.dead`` and the deliveries that failed last.
``replay --id ID`` replays one dead letter, ``replay --queue Q`` every one that died in Q,
``replay --delivery ID`` one failed delivery. A replay without a selector is refused unless
``--all`` says so: replaying everything is never an accident.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from notifier.notifications import deadletters


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, ["-" * width for width in widths], *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _when(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment is not None else "-"


class Command(BaseCommand):
    help = "List or replay dead-lettered messages and failed deliveries."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("list", "replay"))
        parser.add_argument("--queue", help="Only dead letters that died in this queue")
        parser.add_argument("--id", dest="message_id", help="One dead letter, by task id")
        parser.add_argument("--delivery", type=int, help="One failed delivery, by id")
        parser.add_argument("--all", action="store_true", help="Replay every dead letter")
        parser.add_argument("--limit", type=int, default=50, help="Rows to list (default 50)")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "list":
            self._list(queue=options["queue"], limit=options["limit"])
        else:
            self._replay(
                queue=options["queue"],
                message_id=options["message_id"],
                delivery_id=options["delivery"],
                everything=options["all"],
            )

    def _list(self, *, queue: str | None, limit: int) -> None:
        letters = deadletters.list_dead_letters(queue=queue, limit=limit)
        self.stdout.write(f"Dead letters ({len(letters)}):")
        if letters:
            rows = [
                [
                    letter.message_id,
                    letter.task,
                    letter.queue,
                    letter.reason,
                    str(letter.count),
                    _when(letter.died_at),
                ]
                for letter in letters
            ]
            self.stdout.write(_table(["id", "task", "queue", "reason", "count", "died at"], rows))
        failed = deadletters.recent_failed_deliveries(limit=limit)
        self.stdout.write(f"\nRecently failed deliveries ({len(failed)}):")
        if failed:
            rows = [
                [str(d.pk), d.channel, d.reason, _when(d.failed_at), str(d.attempts)]
                for d in failed
            ]
            self.stdout.write(_table(["id", "channel", "reason", "failed at", "attempts"], rows))

    def _replay(
        self,
        *,
        queue: str | None,
        message_id: str | None,
        delivery_id: int | None,
        everything: bool,
    ) -> None:
        if delivery_id is not None:
            if queue or message_id or everything:
                raise CommandError("--delivery replays one delivery; give it alone.")
            if not deadletters.replay_delivery(delivery_id=delivery_id, now=timezone.now()):
                raise CommandError(
                    f"Delivery {delivery_id} was not replayed: it is not failed or unknown, "
                    "or it has expired."
                )
            self.stdout.write(f"Delivery {delivery_id} replayed.")
            return
        if everything == bool(queue or message_id):
            raise CommandError(
                "Say which dead letters to replay: --id, --queue, --delivery, "
                "or --all for every one."
            )
        replayed = deadletters.replay_dead_letters(queue=queue, message_id=message_id)
        if message_id and not replayed:
            raise CommandError(f"No dead letter {message_id} to replay.")
        self.stdout.write(f"Replayed {replayed} dead letter(s).")
