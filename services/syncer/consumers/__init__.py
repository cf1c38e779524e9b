"""One module per queue: the handler and nothing of AMQP."""
