import json

from django.db import transaction
from django.http import JsonResponse

from .models import Order
from .tasks import process_order


def create_order(request):
    """Save the order and queue its processing once the row is committed (never before)."""
    data = json.loads(request.body or b"{}")
    with transaction.atomic():
        order = Order.objects.create(item=data["item"], quantity=int(data["quantity"]))
        process_order.delay_on_commit(order.id)
    return JsonResponse({"order": order.id}, status=202)


def order_status(request, order_id):
    order = Order.objects.get(pk=order_id)
    return JsonResponse({"order": order.id, "status": order.status, "by": order.processed_by})
