"""An empty database index of the local Redis (the one `.ci/run` starts), for a test's own keys."""


def empty_redis_url() -> str:
    """The highest empty database index of the local Redis, or 'none' without a Redis."""
    import redis

    try:
        for index in range(15, 0, -1):
            if redis.Redis(host="127.0.0.1", port=6379, db=index).dbsize() == 0:
                return f"redis://127.0.0.1:6379/{index}"
    except redis.exceptions.ConnectionError:
        pass
    return "none"
