"""The amqp engine."""
