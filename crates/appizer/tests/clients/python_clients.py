"""Sends events to an Appizer server with the official Segment and PostHog Python
libraries, changed in nothing but the host, and prints what it sent as JSON.

Usage: python python_clients.py HOST WRITE_KEY
"""

import json
import sys
import uuid
from datetime import datetime, timedelta, timezone

from posthog import Posthog
from segment.analytics.client import Client as SegmentClient

host, write_key = sys.argv[1], sys.argv[2]
errors = []
sent = []
now = datetime.now(timezone.utc).replace(microsecond=0)


def on_error(error, items):
    errors.append(repr(error))


def record(library, event, distinct_id, message_id, properties, timestamp):
    sent.append(
        {
            "library": library,
            "event": event,
            "distinct_id": distinct_id,
            "message_id": message_id,
            "properties": properties,
            "timestamp": timestamp.isoformat(),
        }
    )


# Segment: batches (the client's default), one of them gzip-compressed.
for gzip in (False, True):
    segment = SegmentClient(write_key, host=host, gzip=gzip, on_error=on_error, max_retries=1)
    tag = "gz" if gzip else "plain"
    for i in range(3):
        mid = str(uuid.uuid4())
        ts = now - timedelta(minutes=10 * i)
        props = {"plan": "pro", "amount": 10 + i, "tag": tag}
        segment.track(user_id=f"user-{tag}", event="Order Completed", properties=props, timestamp=ts, message_id=mid)
        record("segment", "Order Completed", f"user-{tag}", mid, props, ts)
    mid = str(uuid.uuid4())
    segment.identify(user_id=f"user-{tag}", traits={"email": f"{tag}@example.com"}, timestamp=now, message_id=mid)
    record("segment", "$identify", f"user-{tag}", mid, {}, now)
    mid = str(uuid.uuid4())
    segment.page(anonymous_id=f"anon-{tag}", name="Pricing", properties={"path": "/pricing"}, timestamp=now, message_id=mid)
    record("segment", "$pageview", f"anon-{tag}", mid, {"path": "/pricing"}, now)
    mid = str(uuid.uuid4())
    segment.alias(previous_id=f"anon-{tag}", user_id=f"user-{tag}", timestamp=now, message_id=mid)
    record("segment", "$create_alias", f"user-{tag}", mid, {}, now)
    segment.flush()
    segment.shutdown()

# PostHog: posts batches to /batch/ (gzip on for the second client).
for gzip in (False, True):
    tag = "gz" if gzip else "plain"
    posthog = Posthog(write_key, host=host, gzip=gzip, on_error=on_error, max_retries=1)
    for i in range(3):
        mid = str(uuid.uuid4())
        ts = now - timedelta(minutes=5 * i)
        props = {"$current_url": f"https://shop.example/{i}", "n": i, "tag": tag}
        posthog.capture("viewed item", distinct_id=f"ph-{tag}", properties=props, timestamp=ts, uuid=mid)
        record("posthog", "viewed item", f"ph-{tag}", mid, props, ts)
    mid = str(uuid.uuid4())
    posthog.alias(previous_id=f"ph-{tag}", distinct_id=f"ph-user-{tag}", timestamp=now, uuid=mid)
    record("posthog", "$create_alias", f"ph-{tag}", mid, {"alias": f"ph-user-{tag}"}, now)
    posthog.flush()
    posthog.shutdown()

print(json.dumps({"errors": errors, "sent": sent}))
