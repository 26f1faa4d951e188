"""Channels that take a customer notice to the customer: email through the SMTP server.

Separate from the owner-facing notifiers: a customer notice is rendered by the customer
templates (`domain/notices.py`), from the customer sender address (CRM_NOTICE_FROM), to the
address the contacts service gave for this one message. Errors are re-raised without the
address or the server's reply text (which often quotes it): they are recorded with the attempt.
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from followup.adapters.notifiers import smtp_send
from followup.domain.model import Channel
from followup.domain.notices import NoticeMessage
from followup.settings import SmtpSettings


class NoticeDeliveryError(Exception):
    """The channel did not take the notice; the message names no address."""


class EmailNoticeChannel:
    name = "customer_email"
    channel = Channel.EMAIL

    def __init__(self, settings: SmtpSettings) -> None:
        self._s = settings

    def render(self, notice_id: str, message: NoticeMessage, address: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._s.customer_sender or self._s.sender
        msg["To"] = address
        msg["Subject"] = message.subject
        # The same notice sent again (a lease taken over) has the same Message-ID.
        msg["Message-ID"] = f"<{notice_id}@promesa>"
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        msg.set_content(message.body)
        return msg

    async def send(self, notice_id: str, message: NoticeMessage, address: str) -> None:
        try:
            await smtp_send(self._s, self.render(notice_id, message, address))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            raise NoticeDeliveryError(f"recipient refused (SMTP {codes})") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise NoticeDeliveryError(f"{type(exc).__name__} (SMTP {exc.code})") from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            # These name the server, never the recipient.
            raise NoticeDeliveryError(f"{type(exc).__name__}: {exc}") from None
        except aiosmtplib.SMTPException as exc:
            raise NoticeDeliveryError(type(exc).__name__) from None
