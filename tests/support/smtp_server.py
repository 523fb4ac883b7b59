"""A real SMTP server for tests/mail_smtp.rs: aiosmtpd on 127.0.0.1, on a port the system picks.

Usage: smtp_server.py --mode MODE --mails FILE [--cert PEM --key PEM]
                      [--user USER --password PASSWORD] [--reject]
  --mode   starttls  plain greeting, STARTTLS offered and required before MAIL;
           implicit  TLS from the first byte, like port 465;
           plain     no TLS at all: STARTTLS is never offered.
  --mails  every accepted message is appended to this file as one JSON line, flushed at once,
           so the test sees it as soon as the client got its 250: the envelope ("mail_from",
           "rcpt_tos"), the raw message ("content") and, as Python's email package reads it,
           the decoded "headers" (lower-case name -> list of values) and text "body".
  --user, --password  AUTH PLAIN/LOGIN with exactly these is required before MAIL.
  --reject  refuse every message with a 550 that quotes the body's longest ASCII line (the
           link), as content filters do, to show that passgate keeps the body out of its error texts.

Prints the chosen port on stdout once it accepts connections: that line is the readiness
signal, so the test never sleeps and parallel tests never collide on a port.
"""

import argparse
import asyncio
import email
import email.policy
import json
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Recorder:
    def __init__(self, path, reject):
        self.path = path
        self.reject = reject

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content
        # An independent MIME parser: the test checks that what lettre encoded (RFC 2047
        # subjects, quoted-printable bodies) decodes back to what was sent.
        message = email.message_from_bytes(raw, policy=email.policy.default)
        body = message.get_content()
        if self.reject:
            # aiosmtpd writes replies as ASCII; the link line is.
            quoted = max((l for l in body.splitlines() if l.isascii()), key=len, default="")
            return f"550 5.7.1 Refused, it contains: {quoted}"
        headers = {}
        for name, value in message.items():
            headers.setdefault(name.lower(), []).append(str(value))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "content": raw.decode("utf-8", errors="replace"),
            "headers": headers,
            "body": body,
        }
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
            out.flush()
        return "250 Message accepted for delivery"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd then replies 535 itself (by default it assumes the
        # authenticator already answered, and the client would wait forever).
        return AuthResult(success=ok, handled=False)

    return check


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["starttls", "implicit", "plain"], required=True)
    parser.add_argument("--mails", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--reject", action="store_true")
    args = parser.parse_args()

    tls = None
    if args.mode != "plain":
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)

    options = {
        # A fixed name: the default, socket.getfqdn(), may wait on DNS.
        "hostname": "localhost",
    }
    if args.mode == "starttls":
        options.update(tls_context=tls, require_starttls=True)
    if args.user is not None:
        options.update(
            authenticator=authenticator(args.user, args.password),
            auth_required=True,
            # aiosmtpd only knows about TLS it started itself (STARTTLS); on an implicit-TLS
            # socket it would refuse AUTH as unencrypted.
            auth_require_tls=(args.mode == "starttls"),
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Recorder(args.mails, args.reject), **options),
        host="127.0.0.1",
        port=0,
        ssl=tls if args.mode == "implicit" else None,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
