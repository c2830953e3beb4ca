#!/usr/bin/python3
"""Scriptable SMTP sink for Herald's integration tests.

Run with Debian's interpreter (it has python3-aiosmtpd):

    /usr/bin/python3 tests/support/smtp_server.py --dir DIR [--host 127.0.0.1] [--port 0]

Protocol with the parent process
--------------------------------
* stdout: once the socket is listening, exactly one line ``PORT <n>`` is
  printed and flushed. Nothing else is ever written to stdout.
* stdin: the server exits when stdin reaches EOF (the parent closed the pipe
  or died), so no orphaned servers survive a crashed test. Spawn it with a
  piped stdin and keep the write end open for as long as the server is
  needed. ``--no-stdin-watch`` disables this (for manual use).
* SIGTERM / SIGINT: clean exit (status 0).
* stderr: only warnings/errors, never one line per message.

Files in DIR
------------
* ``<seq>-<uuid>.json`` then ``<seq>-<uuid>.eml`` for every accepted message.
  ``seq`` is a zero-padded 8-digit counter starting at 00000001 (so a
  lexical sort is the acceptance order). The .json holds
  ``{"mail_from", "rcpt_tos", "received_at", "seq", "id", "size"}``.
  Both are written under a temporary dot-name and renamed into place, the
  .json first, so once a reader sees an .eml its .json is already complete.
  The .eml holds the message bytes exactly as received in DATA (CRLF line
  endings, dot-stuffing removed).
* ``script.json`` (optional, written by the test): scripted DATA replies,
  ``{"<first recipient, lowercase>": ["451 4.7.1 Try again later", ...],
  "*": [...]}``. Before answering each DATA the server re-reads it; it takes
  the list for the message's first recipient, or ``"*"`` if that list is
  missing or empty, pops the first entry and writes the shortened script
  back atomically. An entry ``"accept"`` means accept normally; any other
  entry must start with a 3-digit code and is sent verbatim as the DATA
  reply (the message is then not stored). Write it atomically too (tmp file
  + rename), since the server may read it at any moment.
* ``log.jsonl``: one line per DATA outcome,
  ``{"rcpt", "rcpt_tos", "mail_from", "reply", "at", "file"}`` where
  ``file`` is the .eml name for accepted messages and null otherwise.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid

from aiosmtpd.smtp import SMTP

HOSTNAME = "herald-test-smtp"
REPLY_RE = re.compile(r"^[2-5][0-9][0-9]([ -].*)?$")


def _write_atomic(directory, name, data):
    """Write bytes to directory/name via a hidden temp file and a rename."""
    tmp = os.path.join(directory, ".tmp-%s-%s" % (uuid.uuid4().hex, name))
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(directory, name))


class SinkHandler:
    def __init__(self, directory):
        self.dir = directory
        self.seq = 0
        self.script_lock = asyncio.Lock()
        self.script_path = os.path.join(directory, "script.json")
        self.log = open(os.path.join(directory, "log.jsonl"), "a", encoding="utf-8")

    def close(self):
        self.log.close()

    def _log(self, rcpt, envelope, reply, file_name):
        line = {
            "rcpt": rcpt,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_from": envelope.mail_from,
            "reply": reply,
            "at": time.time(),
            "file": file_name,
        }
        self.log.write(json.dumps(line) + "\n")
        self.log.flush()

    async def _scripted_reply(self, rcpt):
        """Pop the next scripted reply for rcpt, or None to accept."""
        async with self.script_lock:
            script = None
            for attempt in range(5):
                try:
                    with open(self.script_path, "rb") as f:
                        raw = f.read()
                except FileNotFoundError:
                    return None
                try:
                    script = json.loads(raw)
                    if not isinstance(script, dict):
                        raise ValueError("script.json must be a JSON object")
                    break
                except ValueError:
                    # Possibly a non-atomic write in progress; retry briefly.
                    script = None
                    await asyncio.sleep(0.02 * (attempt + 1))
            if script is None:
                print("smtp_server: unreadable %s" % self.script_path,
                      file=sys.stderr, flush=True)
                return "451 4.3.0 herald-test-smtp: unreadable script.json"

            key = None
            for candidate in (rcpt, "*"):
                entries = script.get(candidate)
                if isinstance(entries, list) and entries:
                    key = candidate
                    break
            if key is None:
                return None
            reply = script[key].pop(0)
            _write_atomic(self.dir, "script.json",
                          json.dumps(script, indent=1).encode("utf-8"))

        if not isinstance(reply, str):
            reply = str(reply)
        reply = reply.strip()
        if reply.lower() == "accept":
            return None
        if not REPLY_RE.match(reply):
            print("smtp_server: bad scripted reply %r" % reply,
                  file=sys.stderr, flush=True)
            return "451 4.3.0 herald-test-smtp: bad scripted reply"
        return reply

    async def handle_DATA(self, server, session, envelope):
        rcpt = envelope.rcpt_tos[0].lower() if envelope.rcpt_tos else ""
        reply = await self._scripted_reply(rcpt)
        if reply is not None:
            self._log(rcpt, envelope, reply, None)
            return reply

        self.seq += 1
        msg_id = uuid.uuid4().hex
        base = "%08d-%s" % (self.seq, msg_id)
        content = envelope.original_content or b""
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "received_at": time.time(),
            "seq": self.seq,
            "id": msg_id,
            "size": len(content),
        }
        try:
            _write_atomic(self.dir, base + ".json",
                          json.dumps(meta).encode("utf-8"))
            _write_atomic(self.dir, base + ".eml", content)
        except OSError as e:
            print("smtp_server: storing %s failed: %s" % (base, e),
                  file=sys.stderr, flush=True)
            reply = "451 4.3.0 herald-test-smtp: storage error"
            self._log(rcpt, envelope, reply, None)
            return reply
        reply = "250 2.0.0 OK queued as %s" % base
        self._log(rcpt, envelope, reply, base + ".eml")
        return reply


def _watch_stdin(loop, stop):
    """Block on stdin in a thread; wake the loop on EOF."""
    try:
        fd = sys.stdin.fileno()
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
    except (OSError, ValueError):
        pass
    loop.call_soon_threadsafe(stop.set)


async def main_async(args):
    directory = os.path.abspath(args.dir)
    os.makedirs(directory, exist_ok=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    handler = SinkHandler(directory)

    def factory():
        return SMTP(
            handler,
            hostname=HOSTNAME,
            decode_data=False,
            data_size_limit=args.max_size,
            enable_SMTPUTF8=True,
            timeout=args.idle_timeout,
            loop=loop,
        )

    server = await loop.create_server(factory, host=args.host, port=args.port,
                                      backlog=1024, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("PORT %d\n" % port)
    sys.stdout.flush()

    if not args.no_stdin_watch:
        threading.Thread(target=_watch_stdin, args=(loop, stop),
                         daemon=True).start()

    try:
        await stop.wait()
    finally:
        server.close()
        handler.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--dir", required=True, help="directory for messages/script/log")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--max-size", type=int, default=10 * 1024 * 1024,
                   help="DATA size limit in bytes (default 10 MiB)")
    p.add_argument("--idle-timeout", type=float, default=300.0,
                   help="seconds before an idle connection is dropped")
    p.add_argument("--no-stdin-watch", action="store_true",
                   help="do not exit on stdin EOF (manual use only)")
    args = p.parse_args()

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="smtp_server: %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    asyncio.run(main_async(args))
    # Skip interpreter teardown of the blocked stdin thread.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
