"""The seed's main.py: send add to the high_priority queue through the custom exchange."""

from tasks import add

result = add.apply_async(
    args=[10, 20], queue="high_priority", exchange="custom", routing_key="high_priority"
)
print(result.get(timeout=60))
