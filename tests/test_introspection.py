"""3.14's asyncio introspection on a program running on pyloop, compared with asyncio:
`python -m asyncio ps PID` and `pstree PID` (another process reads the program's tasks
from its memory), and asyncio.capture_call_graph()/print_call_graph() in the program."""

import asyncio
import io
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import missing

pytestmark = pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio's introspection is 3.14+")

PROGRAM = textwrap.dedent("""
    import asyncio, sys
    import pyloop

    async def leaf():
        await asyncio.sleep(60)

    async def middle():
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf(), name="leaf-task")

    async def main():
        task = asyncio.create_task(middle(), name="middle-task")
        await asyncio.sleep(0.05)
        print("ready", flush=True)
        await task

    factory = pyloop.new_event_loop if sys.argv[1] == "pyloop" else asyncio.new_event_loop
    asyncio.run(main(), loop_factory=factory)
""")


def _inspect(loop_name, tool):
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, loop_name], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        out = subprocess.run([sys.executable, "-m", "asyncio", tool, str(proc.pid)], capture_output=True,
                             text=True, timeout=60)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    return out


@pytest.mark.parametrize("tool", ["ps", "pstree"])
def test_ps_and_pstree_see_pyloops_tasks_as_asyncios(tool):
    reference = _inspect("asyncio", tool)
    if reference.returncode != 0:
        missing(f"`python -m asyncio {tool}` cannot attach here, on asyncio either: {reference.stderr.strip()}")
    ours = _inspect("pyloop", tool)
    assert ours.returncode == 0, ours.stderr
    for name in ("Task-1", "middle-task", "leaf-task"):
        assert name in ours.stdout, ours.stdout
    # The same output, but for the thread's id and the tasks' addresses.
    def normalized(text):
        text = re.sub(r"^\d+ ", "TID ", text, flags=re.M)
        return re.sub(r"0x[0-9a-f]{5,}", "ADDR", text)
    assert normalized(ours.stdout) == normalized(reference.stdout)


def test_capture_and_print_call_graph(loop):
    async def leaf(graphs):
        await asyncio.sleep(0)
        graphs.append(asyncio.capture_call_graph())
        buf = io.StringIO()
        asyncio.print_call_graph(file=buf)
        graphs.append(buf.getvalue())

    async def middle(graphs):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf(graphs), name="leaf-task")

    async def main():
        graphs = []
        await asyncio.create_task(middle(graphs), name="middle-task")
        return graphs

    graph, printed = loop.run_until_complete(main())
    assert graph.future.get_name() == "leaf-task"
    assert [f.future.get_name() for f in graph.awaited_by] == ["middle-task"]
    assert [f.frame.f_code.co_name for f in graph.call_stack][:1] == ["leaf"]
    assert "* Task(name='leaf-task'" in printed and "middle-task" in printed
