"""Scenarios run with the official RocketMQ 5 Python client (PyPI rocketmq-python-client)
against a txmq cluster's RocketMQ port. Called by cluster-tests/tests/rocketmq.rs, one
scenario per run:

    python official_python.py ENDPOINTS SCENARIO TOPIC [ARGS...]

Prints one JSON document on stdout (what the Rust test checks against txmq's own API) and
exits non-zero, with the reason on stderr, when the client fails."""

import json
import os
import sys
import threading
import time

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials, FilterExpression, Message,
                      MessageListener, Producer, PushConsumer, SimpleConsumer, TransactionChecker,
                      TransactionResolution)


def config(endpoints):
    # RMQ_AK / RMQ_SK: a txmq user's name and the secret key `txmq user access-key` made.
    credentials = Credentials(os.environ.get("RMQ_AK", ""), os.environ.get("RMQ_SK", ""))
    return ClientConfiguration(endpoints, credentials, request_timeout=10)


def message(topic, body, key, tag, props=None, keys=()):
    m = Message()
    m.topic = topic
    m.body = body.encode()
    m.tag = tag
    # The client keeps keys in a set; each assignment adds one.
    for k in (key, *keys):
        m.keys = k
    for k, v in (props or {}).items():
        m.add_property(k, v)
    return m


def send_normal(endpoints, topic, count):
    producer = Producer(config(endpoints), (topic,))
    producer.startup()
    try:
        ids = []
        for i in range(count):
            receipt = producer.send(message(topic, f"normal-{i}", f"key-{i}", "plain", {"n": str(i)}))
            ids.append(receipt.message_id)
        return {"message_ids": ids}
    finally:
        producer.shutdown()


class Answers(TransactionChecker):
    """The producer's 'local database': what each transaction's outcome is."""

    def __init__(self, resolution):
        self.resolution = resolution
        self.checked = []
        self.lock = threading.Lock()

    def check(self, msg):
        with self.lock:
            self.checked.append(msg.message_id)
        return self.resolution


def send_transactions(endpoints, topic, decide, probe_group):
    """Three transactions: committed, rolled back, and one left undecided for the check-back
    (answered COMMIT by the checker). Waits for the check, then for both committed messages to
    reach `probe_group`."""
    checker = Answers(TransactionResolution.COMMIT)
    producer = Producer(config(endpoints), (topic,), checker)
    producer.startup()
    try:
        out = {}
        for name in ("commit", "rollback", "check"):
            txn = producer.begin_transaction()
            receipt = producer.send(
                message(topic, f"txn-{name}", f"order-{name}", name, {"kind": name}, keys=("second",)),
                txn,
            )
            out[name] = {"message_id": receipt.message_id, "transaction_id": receipt.transaction_id}
            if name == "commit":
                txn.commit()
            elif name == "rollback":
                txn.rollback()
        deadline = time.time() + float(decide)
        while time.time() < deadline and out["check"]["message_id"] not in checker.checked:
            time.sleep(0.2)
        out["checked"] = list(checker.checked)
        if out["check"]["message_id"] in checker.checked:
            # The client asks the checker first and sends its answer afterwards: shutting down
            # as soon as the checker has run can drop that answer. Both committed messages
            # reaching a consumer show that the answer has landed.
            out["delivered"] = receive(endpoints, topic, probe_group, 2)["messages"]
        return out
    finally:
        producer.shutdown()


def receive(endpoints, topic, group, want, ack=True, invisible=10):
    consumer = SimpleConsumer(config(endpoints), group, {topic: FilterExpression()}, await_duration=5)
    consumer.startup()
    try:
        got = []
        deadline = time.time() + 60
        while len(got) < want and time.time() < deadline:
            for m in consumer.receive(16, invisible):
                got.append({
                    "message_id": m.message_id,
                    "body": m.body.decode(),
                    "keys": list(m.keys),
                    "tag": m.tag,
                    "properties": dict(m.properties),
                    "delivery_attempt": m.delivery_attempt,
                })
                if ack:
                    consumer.ack(m)
        return {"messages": got}
    finally:
        consumer.shutdown()


def redeliver(endpoints, topic, group):
    """Receives one message without acking, waits out its invisibility, receives it again
    (higher delivery attempt), extends it with change_invisible_duration, then acks it."""
    consumer = SimpleConsumer(config(endpoints), group, {topic: FilterExpression()}, await_duration=5)
    consumer.startup()
    try:
        attempts = []
        deadline = time.time() + 60
        while len(attempts) < 2 and time.time() < deadline:
            for m in consumer.receive(1, 2):
                attempts.append({"message_id": m.message_id, "delivery_attempt": m.delivery_attempt})
                if len(attempts) == 2:
                    consumer.change_invisible_duration(m, 30)
                    consumer.ack(m)
        return {"attempts": attempts}
    finally:
        consumer.shutdown()


class Collect(MessageListener):
    """A push consumer's listener that keeps what it gets and acknowledges it."""

    def __init__(self):
        self.bodies = []
        self.lock = threading.Lock()

    def consume(self, msg):
        with self.lock:
            self.bodies.append(msg.body.decode())
        return ConsumeResult.SUCCESS


def push(endpoints, topic, group, want, tag):
    """A PushConsumer (QueryAssignment, then receives) subscribed with a tag filter."""
    listener = Collect()
    consumer = PushConsumer(config(endpoints), group, listener, {topic: FilterExpression(tag)})
    consumer.startup()
    try:
        deadline = time.time() + 60
        while len(listener.bodies) < want and time.time() < deadline:
            time.sleep(0.2)
        # Anything beyond `want` (a message the filter should have skipped) shows up here.
        time.sleep(2)
        with listener.lock:
            return {"bodies": sorted(listener.bodies)}
    finally:
        consumer.shutdown()


def main():
    endpoints, scenario, topic = sys.argv[1:4]
    extra = sys.argv[4:]
    if scenario == "send":
        result = send_normal(endpoints, topic, int(extra[0]))
    elif scenario == "transactions":
        result = send_transactions(endpoints, topic, extra[0], extra[1])
    elif scenario == "receive":
        result = receive(endpoints, topic, extra[0], int(extra[1]))
    elif scenario == "push":
        result = push(endpoints, topic, extra[0], int(extra[1]), extra[2])
    elif scenario == "redeliver":
        result = redeliver(endpoints, topic, extra[0])
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
