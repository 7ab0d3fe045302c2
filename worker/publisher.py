"""ConfirmedPublisher: publishes to RabbitMQ with publisher confirms, many messages in flight at once.

Celery's apply_async with `confirm_publish` writes one message, then blocks its thread until
RabbitMQ confirms that one; measured on our 2-core machines it cost ~0.5 ms of CPU per task in
Celery and py-amqp, and every publish waited a full round trip of its own. Here one thread owns a
py-amqp connection whose channel is in confirm mode: callers hand it a message and wait; it writes
every message handed over since its last turn, then reads the confirms as they come. RabbitMQ
confirms in groups (`multiple`), so under load one frame read confirms many messages.

A caller is told "published" only for a message RabbitMQ acked. A nack, a message returned as
unroutable (it is published `mandatory`), a lost connection before the ack and a confirm that does
not come in time all raise QueueUnavailable: the caller must treat them as "maybe queued"
(tserver/handler.py leaves a cancel request). NotPublished, its subclass, says nothing was sent.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import amqp
from amqp.exceptions import AMQPError

from worker.errors import NotPublished, QueueUnavailable

log = logging.getLogger(__name__)


# Errors by which py-amqp and the socket layer report a broken or refused connection.
CONNECTION_ERRORS = (AMQPError, OSError, socket.timeout, EOFError)
# While idle, the thread wakes this often to keep the connection's heartbeats going.
_TICK = 1.0

Connect = Callable[[], "tuple[amqp.Connection, amqp.Channel]"]


@dataclass(eq=False)
class Job:
    """One message handed to the publisher; `on_done(error)` is called once, in the publisher's thread."""

    message: amqp.Message
    exchange: str
    routing_key: str
    on_done: Callable[[QueueUnavailable | None], object]
    key: str = ""  # the message's correlation_id: how a returned message is matched to its job
    abandoned: bool = False  # the caller stopped waiting: do not publish it any more
    sent: float = 0.0  # time.monotonic() when it was written
    finished: bool = False

    def finish(self, error: QueueUnavailable | None = None) -> None:
        if not self.finished:
            self.finished = True
            try:
                self.on_done(error)
            except Exception:  # noqa: BLE001 - the caller's defect must not cost the connection
                log.exception("a publish callback failed")


class ConfirmedPublisher:
    """Thread-safe: `submit` and `publish` may be called from any number of threads at once."""

    def __init__(self, connect: Connect, *, stuck_after: float = 5.0, name: str = "amqp-publisher") -> None:
        #: Opens a connection and a channel with the queue declared; called in the publisher's thread.
        self._connect = connect
        #: A message unconfirmed for this long means the connection is stuck: it is dropped.
        self._stuck_after = stuck_after
        self._name = name
        self._lock = threading.Lock()
        self._waiting: deque[Job] = deque()
        self._idle = False  # the thread is (about to be) asleep in select(): a new job must wake it
        self._closed = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # Owned by the publisher's thread alone:
        self._conn: amqp.Connection | None = None
        self._channel: amqp.Channel | None = None
        self._next_tag = 1
        self._unconfirmed: dict[int, Job] = {}  # delivery tag -> job, in publishing order
        self._returned: set[str] = set()
        self._redeclare = False  # a message came back unroutable: reconnect, which declares the queue

    def submit(self, message: amqp.Message, *, exchange: str, routing_key: str,
               on_done: Callable[[QueueUnavailable | None], object]) -> Job:
        """Hand a message over without waiting: `on_done(None)` once RabbitMQ confirmed it, or
        `on_done(error)`. The callback runs in the publisher's thread and must not block."""
        job = Job(message, exchange, routing_key, on_done, key=str(message.properties.get("correlation_id", "")))
        with self._lock:
            if self._closed:
                raise NotPublished("the publisher is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._waiting.append(job)
            if self._idle:
                self._idle = False
                self._wake()  # under the lock: close() cannot have closed the pipe meanwhile
        return job

    def publish(self, message: amqp.Message, *, exchange: str, routing_key: str, timeout: float) -> None:
        """Publish `message` and wait until RabbitMQ confirms it; QueueUnavailable otherwise."""
        done = threading.Event()
        errors: list[QueueUnavailable] = []

        def on_done(error: QueueUnavailable | None) -> None:
            if error is not None:
                errors.append(error)
            done.set()

        job = self.submit(message, exchange=exchange, routing_key=routing_key, on_done=on_done)
        if not done.wait(timeout):
            job.abandoned = True
            raise QueueUnavailable(f"RabbitMQ did not confirm the message within {timeout:g} s")
        if errors:
            raise errors[0]

    def close(self, timeout: float = 5.0) -> None:
        """Fail what is still waiting, close the connection and end the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._wake()
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            if thread is None or not thread.is_alive():  # nobody reads or writes the pipe any more
                os.close(self._wake_r)
                os.close(self._wake_w)

    # -- the publisher's thread -------------------------------------------------------------------

    def _run(self) -> None:
        last_tick = time.monotonic()
        while True:
            with self._lock:
                jobs = list(self._waiting)
                self._waiting.clear()
                closed = self._closed
                self._idle = not jobs and not closed
            if closed:
                self._drop_connection(QueueUnavailable("the publisher was closed"))
                for job in jobs:
                    job.finish(NotPublished("the publisher was closed"))
                return
            try:
                if jobs:
                    self._send(jobs)
                # After a send, only read what has already arrived (confirms of earlier rounds): the
                # next round of jobs is not kept waiting behind this one's confirms.
                self._wait(0 if jobs else _TICK)
                now = time.monotonic()
                if now - last_tick >= _TICK:
                    last_tick = now
                    self._heartbeat()
                    self._check_stuck(now)
            except Exception as exc:  # a defect must not end the thread: every later publish would hang
                log.exception("publisher failed")
                error = QueueUnavailable(f"the publisher failed: {exc!r}")
                for job in jobs:
                    job.finish(error)  # a no-op for those already finished
                self._drop_connection(error)

    def _send(self, jobs: list[Job]) -> None:
        jobs = [job for job in jobs if not job.abandoned]
        if not jobs:
            return
        if self._redeclare:
            self._redeclare = False
            self._drop_connection(None)
        if self._channel is None:
            try:
                self._conn, self._channel = self._connect()
                self._channel.events["basic_ack"].add(self._on_ack)
                self._channel.events["basic_nack"].add(self._on_nack)
                self._channel.events["basic_return"].add(self._on_return)
                self._next_tag = 1
            except CONNECTION_ERRORS as exc:
                log.warning("cannot connect to RabbitMQ: %r", exc)
                self._drop_connection(None)
                for job in jobs:
                    job.finish(NotPublished(f"cannot connect to RabbitMQ: {exc}"))
                return
        assert self._channel is not None
        for i, job in enumerate(jobs):
            try:
                self._channel.basic_publish(job.message, exchange=job.exchange, routing_key=job.routing_key,
                                            mandatory=True)
            except CONNECTION_ERRORS as exc:
                log.warning("publishing failed: %r", exc)
                # The broker routes a message only once all its frames arrived: these did not.
                for unsent in jobs[i:]:
                    unsent.finish(NotPublished(f"lost the connection to RabbitMQ: {exc}"))
                self._drop_connection(QueueUnavailable(f"lost the connection to RabbitMQ: {exc}"))
                return
            job.sent = time.monotonic()
            self._unconfirmed[self._next_tag] = job
            self._next_tag += 1

    def _wait(self, timeout: float) -> None:
        """Sleep until a confirm arrives, a job is handed over or `timeout` passes; handle what came."""
        sock = self._conn.sock if self._conn is not None else None
        fds = [self._wake_r] if sock is None else [self._wake_r, sock]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except (OSError, ValueError) as exc:  # the socket was closed under us
            self._drop_connection(QueueUnavailable(f"lost the connection to RabbitMQ: {exc}"))
            return
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if sock is not None and sock in readable:
            self._read_frames(sock)

    def _read_frames(self, sock: socket.socket) -> None:
        assert self._conn is not None
        try:
            while True:
                # A whole frame is on its way once the socket is readable: read it, and every frame
                # after it that has arrived. (Not drain_events: after a heartbeat frame it would
                # wait for one more frame.)
                self._conn.blocking_read(timeout=None)
                if not select.select([sock], [], [], 0)[0]:
                    return
        except CONNECTION_ERRORS as exc:
            log.warning("lost the connection to RabbitMQ: %r", exc)
            self._drop_connection(QueueUnavailable(f"lost the connection to RabbitMQ: {exc}"))

    def _heartbeat(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.heartbeat_tick()
        except CONNECTION_ERRORS as exc:
            log.warning("RabbitMQ missed its heartbeats: %r", exc)
            self._drop_connection(QueueUnavailable(f"lost the connection to RabbitMQ: {exc}"))

    def _check_stuck(self, now: float) -> None:
        # A broker that takes TCP but confirms nothing (frozen, or blocked by a resource alarm):
        # start afresh, so that once it answers again no new message waits behind old ones.
        oldest = next(iter(self._unconfirmed.values()), None)
        if oldest is not None and now - oldest.sent > self._stuck_after:
            log.warning("RabbitMQ confirmed nothing for %.1f s: reconnecting", now - oldest.sent)
            self._drop_connection(QueueUnavailable("RabbitMQ stopped confirming messages"))

    def _drop_connection(self, error: QueueUnavailable | None) -> None:
        """Forget the connection; every message not yet confirmed fails with `error`."""
        unconfirmed, self._unconfirmed = self._unconfirmed, {}
        for job in unconfirmed.values():
            job.finish(error or QueueUnavailable("lost the connection to RabbitMQ"))
        self._returned.clear()
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                conn.collect()  # frees the socket without a closing handshake that could hang
            except Exception:  # noqa: BLE001 - best effort on a connection already broken
                pass

    # -- confirms (called by py-amqp from drain_events, in the publisher's thread) ----------------

    def _confirmed(self, delivery_tag: int, multiple: bool) -> list[Job]:
        if not multiple:
            job = self._unconfirmed.pop(delivery_tag, None)
            return [] if job is None else [job]
        done = []
        for tag in list(self._unconfirmed):
            if tag > delivery_tag:
                break
            done.append(self._unconfirmed.pop(tag))
        return done

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        for job in self._confirmed(delivery_tag, multiple):
            if job.key and job.key in self._returned:
                self._returned.discard(job.key)
                job.finish(NotPublished("RabbitMQ could not route the message: the queue does not exist"))
                self._redeclare = True
            else:
                job.finish()

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        for job in self._confirmed(delivery_tag, multiple):
            job.finish(QueueUnavailable("RabbitMQ refused the message (nack)"))

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: amqp.Message) -> None:
        # A returned message is acked right after: remember it, so that the ack reports a failure.
        log.warning("RabbitMQ returned a message for %r: %s", routing_key, exc)
        key = message.properties.get("correlation_id")
        if key:
            self._returned.add(str(key))

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:  # the pipe is full: the thread has wake-ups enough
            pass
