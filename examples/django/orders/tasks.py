"""Found by ``app.autodiscover_tasks()``: every installed app's ``tasks`` module."""

from celeriac import shared_task  # with Celery: from celery import shared_task

from .models import Order


@shared_task(bind=True)
def process_order(self, order_id):
    """Reads the order that the view committed, and marks it processed."""
    order = Order.objects.get(pk=order_id)
    order.status = "processed"
    order.processed_by = self.request.hostname or ""
    order.save(update_fields=["status", "processed_by"])
    return {"order": order_id, "quantity": order.quantity}
