"""The raw ceiling: a bare confluent-kafka consume loop that only touches each value.

python -m benchmarks.runners.raw_consume --bootstrap HOST:PORT --topic TOPIC
"""

from __future__ import annotations

from benchmarks.runners.common import Clock, arguments, batches, open_consumer


def main() -> None:
    args = arguments(__doc__ or "")
    consumer, total = open_consumer(args.bootstrap, args.topic)
    clock = Clock()
    events = touched = 0
    for batch in batches(consumer, total):
        clock.first()
        for message in batch:
            touched += len(message.value() or b"")
        events += len(batch)
    clock.report(events, bytes=touched)
    consumer.close()


if __name__ == "__main__":
    main()
