"""A pool of three agents (three processes, three simulated hosts) around one git daemon converges, even when
an agent is killed and restarted; no commit is lost and every clone passes git fsck."""

from __future__ import annotations

import signal
import subprocess
import time

from drivers.models import DomainState
from store import Store
from tests.store.git_servers import git_daemon
from tests.toolstack.pool_helpers import HOSTS, running_on, start_agent, stop_agents, wait_until
from toolstack import layout
from toolstack.ops import Toolstack
from toolstack.sync import pull


def converged(tmp_path, placement):
    for host in HOSTS:
        domains = running_on(tmp_path, host)
        wanted = {uuid for uuid, where in placement.items() if where == host}
        if set(domains) != wanted or any(state != DomainState.RUNNING for state in domains.values()):
            return False
    return True


def test_three_agents_place_migrate_survive_a_kill_and_converge(tmp_path):
    base = tmp_path / "server"
    base.mkdir()
    with git_daemon(str(base)) as daemon:
        url = f"{daemon}/pool.git"
        operator = Toolstack.init(
            str(tmp_path / "operator.git"), "sim://", host="operator", author="operator"
        )
        Store.open(base / "pool.git").close()
        operator.store.remote("origin", url).push("main")
        agents = {host: start_agent(tmp_path, url, host) for host in HOSTS}
        try:
            placement = {}
            for n in range(30):
                vm = operator.create(f"vm{n:02d}", memory="32M", host=HOSTS[n % 3])
                operator.start(vm.uuid)
                placement[vm.uuid] = HOSTS[n % 3]
            assert pull(operator, push=True, reconcile=False).pushed
            assert wait_until(lambda: converged(tmp_path, placement), 120), "placement did not converge"

            for n in range(5):
                vm = operator.vm(f"vm{n:02d}")
                target = HOSTS[(n + 1) % 3]
                operator.migrate(vm.uuid, target)
                placement[vm.uuid] = target
            pull(operator, push=True, reconcile=False)
            agents["h2"].send_signal(signal.SIGKILL)  # killed while the pool is migrating
            agents["h2"].wait()
            time.sleep(1)
            agents["h2"] = start_agent(tmp_path, url, "h2")
            assert wait_until(lambda: converged(tmp_path, placement), 120), "migration did not converge"

            operator_head = operator.main.head
            with Store.open(base / "pool.git") as central:
                assert central.graph.is_ancestor(operator_head, central.branch("main").head)  # nothing lost

            def observed_everywhere() -> bool:
                # An agent pushes what it observed on its next round after it converged its host.
                with Store.open(base / "pool.git") as central:
                    main_tree = central.branch("main").tree
                    return all(
                        set(layout.observed_uuids(main_tree, host))
                        >= {u for u, where in placement.items() if where == host}
                        for host in HOSTS
                    )

            assert wait_until(observed_everywhere, 60), "the agents' observations never reached the server"
        finally:
            stop_agents(agents)
            operator.close()
    for repo in [base / "pool.git", tmp_path / "operator.git", *(tmp_path / f"{h}.git" for h in HOSTS)]:
        fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--full"], capture_output=True, text=True)
        assert fsck.returncode == 0, f"{repo}: {fsck.stderr}"


def test_an_agent_round_that_meets_a_hypervisor_error_reports_it_and_the_next_round_applies(tmp_path, mocker):
    # libvirtd restarting under a running agent: the round fails, the agent stays up and tries again.
    from drivers import HypervisorUnavailable
    from toolstack.agent import open_agent, run_agent

    operator = Toolstack.init(str(tmp_path / "operator.git"), "sim://", host="operator", author="operator")
    web = operator.create("web", memory="64M", host="h1")
    operator.start(web.uuid)
    ts, joined = open_agent(str(tmp_path / "h1.git"), f"sim://{tmp_path}/h1.sim", "h1", operator.store.gitdir)
    said: list[str] = []
    outage = HypervisorUnavailable("cannot connect to the hypervisor", operation="list")
    mocker.patch.object(ts.driver, "list", side_effect=outage)

    run_agent(ts, once=True, report=said.append, joined=joined)

    assert any("HypervisorUnavailable" in line and "(retrying)" in line for line in said), said
    mocker.stopall()
    run_agent(ts, once=True, report=said.append)
    assert ts.driver.info(web.uuid).state == DomainState.RUNNING
    ts.close()
    operator.close()
