"""A handler without the agent: the runner's own records still fill the store."""


def handler(event, context):
    return {"request_id": context.aws_request_id}
