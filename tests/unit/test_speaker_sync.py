"""One speaker's reaction to the election (kubesvc/speaker/speaker.py), with its caches,
heartbeats and Event recorder replaced by fakes and an ARP responder without a socket:
which IPs it answers for, when it sends gratuitous ARP, and which Events it records (none
while it is cut off; again for what it owns when speakers rejoin)."""

from __future__ import annotations

import asyncio
from typing import Any

from kubesvc.node.sandbox import NodeNet
from kubesvc.speaker.model import ranking
from kubesvc.speaker.speaker import Speaker
from tests.unit.test_speaker_model import l2adv, node, pool, slc, svc

NODES = ("n1", "n2", "n3")
IP = "172.31.7.240"


class FakeInformer:
    def __init__(self, objs: list[dict[str, Any]]) -> None:
        self.objs = objs
        self.indexers: dict[str, Any] = {}

    def list(self) -> list[dict[str, Any]]:
        return list(self.objs)

    def get(self, key: str) -> dict[str, Any] | None:
        for o in self.objs:
            m = o["metadata"]
            if f"{m.get('namespace')}/{m['name']}" == key:
                return o
        return None

    def add_handler(self, *_fns: Any) -> None:
        pass

    def add_indexer(self, name: str, fn: Any) -> None:
        self.indexers[name] = fn

    def by_index(self, name: str, value: str) -> list[dict[str, Any]]:
        return [o for o in self.objs if value in self.indexers[name](o)]


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], reason, message))


class FakeBeacon:
    def __init__(self, alive: set[str]) -> None:
        self.live = frozenset(alive)

    def alive(self) -> frozenset[str]:
        return self.live


def speaker(me: str, alive: set[str], nodes: tuple[str, ...] = NODES) -> Speaker:
    net = NodeNet("c", me, "ksv-c-x", "kn0", "ksb-0", "172.31.7.10", 24, "10.244.0.0/24",
                  "10.244.0.0/16", "10.96.0.0/12")  # fmt: skip
    s = Speaker(
        client=None,  # type: ignore[arg-type]
        node=me,
        net=net,
        key=b"k" * 32,
        services=FakeInformer([svc("web", IP)]),  # type: ignore[arg-type]
        slices=FakeInformer([slc("web", list(nodes))]),  # type: ignore[arg-type]
        nodes=FakeInformer([node(n) for n in nodes]),  # type: ignore[arg-type]
    )
    s.pools = FakeInformer([pool()])  # type: ignore[assignment]
    s.advertisements = FakeInformer([l2adv()])  # type: ignore[assignment]
    s.recorder = FakeRecorder()  # type: ignore[assignment]
    s.beacon = FakeBeacon(alive)  # type: ignore[assignment]
    s.announcer.mac = b"\x02\0\0\0\0\x01"
    return s


def events(s: Speaker) -> list[tuple[str, str, str]]:
    return s.recorder.events  # type: ignore[attr-defined, no-any-return]


def test_the_owner_answers_sends_gratuitous_arp_and_says_so() -> None:
    owner = ranking(NODES, IP)[0]

    async def main() -> None:
        s = speaker(owner, set(NODES))
        s.sync()
        assert s.announcer.ips == {IP}
        assert IP in s.announcer._bursts  # gratuitous ARP on taking the IP
        assert events(s) == [
            ("web", "nodeAssigned", f'announcing from node "{owner}" with protocol "layer2"')
        ]
        s.sync()  # nothing changed: no second Event
        assert len(events(s)) == 1
        s.announcer.close()

    asyncio.run(main())


def test_the_others_stay_silent() -> None:
    async def main() -> None:
        for me in ranking(NODES, IP)[1:]:
            s = speaker(me, set(NODES))
            s.sync()
            assert s.announcer.ips == set() and events(s) == []
            s.announcer.close()

    asyncio.run(main())


def test_takeover_when_the_owner_is_gone() -> None:
    owner, second = ranking(NODES, IP)[:2]

    async def main() -> None:
        s = speaker(second, set(NODES))
        s.sync()
        assert s.announcer.ips == set()
        s.beacon = FakeBeacon(set(NODES) - {owner})  # type: ignore[assignment]
        s._membership_changed(frozenset(set(NODES) - {owner}))
        s.sync()
        assert s.announcer.ips == {IP} and IP in s.announcer._bursts
        assert [e[1] for e in events(s)] == ["nodeAssigned"]
        # the owner is back: the IP goes back, and this node stops answering at once
        s.beacon = FakeBeacon(set(NODES))  # type: ignore[assignment]
        s._membership_changed(frozenset(NODES))
        s.sync()
        assert s.announcer.ips == set() and s.announcer._bursts == {}
        s.announcer.close()

    asyncio.run(main())


def test_a_cut_off_speaker_announces_everything_but_records_no_event() -> None:
    me = ranking(NODES, IP)[-1]  # the last in line: never the owner while others live

    async def main() -> None:
        s = speaker(me, {me})
        s.sync()
        assert s.announcer.ips == {IP}  # alone as far as it can tell
        assert events(s) == []  # but the others are Ready in the API: it is cut off
        s.beacon = FakeBeacon(set(NODES))  # type: ignore[assignment]
        s._membership_changed(frozenset(NODES))
        s.sync()
        assert s.announcer.ips == set() and events(s) == []
        s.announcer.close()

    asyncio.run(main())


def test_a_single_node_cluster_is_not_cut_off() -> None:
    async def main() -> None:
        s = speaker("n1", {"n1"}, nodes=("n1",))
        s.sync()
        assert s.announcer.ips == {IP} and [e[1] for e in events(s)] == ["nodeAssigned"]
        s.announcer.close()

    asyncio.run(main())


def test_the_owner_repeats_itself_when_speakers_rejoin() -> None:
    owner = ranking(NODES, IP)[0]

    async def main() -> None:
        s = speaker(owner, set(NODES))
        s.sync()
        s.announcer._bursts.pop(IP).cancel()
        # another node was cut off and comes back (it may have told hosts its own MAC)
        s.beacon = FakeBeacon({owner, *NODES[:1]})  # type: ignore[assignment]
        s._membership_changed(frozenset({owner, *NODES[:1]}))
        s.beacon = FakeBeacon(set(NODES))  # type: ignore[assignment]
        s._membership_changed(frozenset(NODES))
        s.sync()
        assert IP in s.announcer._bursts  # gratuitous ARP again
        assert len(events(s)) == 2  # and the Event again, so the latest names the owner
        s.announcer.close()

    asyncio.run(main())
