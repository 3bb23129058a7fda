"""Exception traces in log text: parsed as Java and Python print them, fingerprinted by stack."""

from __future__ import annotations

from ml_monitoring_service.explain.traces import TRACE_FRAMES, parse_trace


def java(message: str, lines: tuple[int, int], inner: str = "GatewayClient.charge") -> str:
    return "\n".join(
        [
            "Charge failed for order 4711",
            f"java.net.SocketTimeoutException: {message}",
            f"\tat java.base/java.net.SocketInputStream.read(SocketInputStream.java:{lines[0]})",
            f"\tat com.shop.payment.{inner}(GatewayClient.java:{lines[1]})",
            "\tat com.shop.payment.PaymentService.pay(PaymentService.java:41)",
            "Caused by: java.io.IOException: stream closed",
            "\tat com.shop.payment.Stream.close(Stream.java:9)",
            "\t... 12 more",
        ]
    )


def python(
    message: str, line: int, function: str = "get_cart", final: str = "ConnectionError"
) -> str:
    return "\n".join(
        [
            "Traceback (most recent call last):",
            f'  File "/app/cart/store.py", line {line}, in {function}',
            "    return self._redis.get(key)",
            f'  File "/usr/lib/redis/client.py", line {line * 2}, in get',
            "    raise ConnectionError(message)",
            f"redis.exceptions.{final}: {message}",
        ]
    )


def test_java_trace_type_and_innermost_frames_without_modules_or_lines() -> None:
    trace = parse_trace(java("Read timed out after 3000 ms", (170, 88)))
    assert trace is not None
    assert trace.type == "java.net.SocketTimeoutException"
    # "Caused by" belongs to another exception; "... 12 more" is not a frame.
    assert trace.frames == (
        "java.net.SocketInputStream.read",
        "com.shop.payment.GatewayClient.charge",
        "com.shop.payment.PaymentService.pay",
    )
    assert trace.header == "java.net.SocketTimeoutException: Read timed out after 3000 ms"


def test_python_trace_frames_innermost_first_and_the_exception_line() -> None:
    trace = parse_trace(python("Error 111 connecting to redis:6379", 42))
    assert trace is not None
    assert trace.type == "redis.exceptions.ConnectionError"
    assert trace.frames == ("/usr/lib/redis/client.py:get", "/app/cart/store.py:get_cart")
    assert trace.header == "redis.exceptions.ConnectionError: Error 111 connecting to redis:6379"


def test_fingerprints_ignore_messages_and_line_numbers() -> None:
    one = parse_trace(java("Read timed out after 3000 ms", (170, 88)))
    two = parse_trace(java("Read timed out after 12 ms", (171, 93)))
    assert one is not None and two is not None and one.fingerprint == two.fingerprint
    py_one, py_two = parse_trace(python("a", 42)), parse_trace(python("b", 57))
    assert py_one is not None and py_two is not None
    assert py_one.fingerprint == py_two.fingerprint


def test_fingerprints_separate_different_stacks_and_types() -> None:
    base = parse_trace(java("x", (1, 2)))
    other_frame = parse_trace(java("x", (1, 2), inner="GatewayClient.refund"))
    other_function = parse_trace(python("x", 1, function="put_cart"))
    other_type = parse_trace(python("x", 1, final="TimeoutError"))
    prints = [t.fingerprint for t in (base, other_frame, parse_trace(python("x", 1))) if t]
    prints += [t.fingerprint for t in (other_function, other_type) if t]
    assert len(prints) == 5 and len(set(prints)) == 5


def test_only_the_innermost_frames_count() -> None:
    frames = [f"\tat com.shop.Deep.level{i}(Deep.java:{i})" for i in range(TRACE_FRAMES + 3)]
    deep = parse_trace("\n".join(["java.lang.StackOverflowError", *frames]))
    deeper = parse_trace("\n".join(["java.lang.StackOverflowError", *frames, frames[0]]))
    assert deep is not None and deeper is not None
    assert len(deep.frames) == TRACE_FRAMES and deep.fingerprint == deeper.fingerprint


def test_chained_python_tracebacks_read_the_exception_that_escaped() -> None:
    text = "\n".join(
        [
            python("first", 1),
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            python("second", 2, function="checkout", final="TimeoutError"),
        ]
    )
    trace = parse_trace(text)
    assert trace is not None and trace.type == "redis.exceptions.TimeoutError"
    assert trace.frames[-1] == "/app/cart/store.py:checkout"


def test_text_without_a_trace_gives_none() -> None:
    assert parse_trace("GET /cart 200 in 12 ms") is None
    assert parse_trace("Error: disk full\nretrying in 5 s") is None
    assert parse_trace("Traceback (most recent call last):\n  truncated") is None
