"""Upstream's ingress-controller-conformance features (tests/e2e/ingress_conformance/, vendored
unchanged) against the ingress controller `kubesvc up` deploys: one cluster for all of them;
each scenario is a test, its steps run by the suite's step definitions (steps.py), its
requests sent from an outside host to the address in the Ingress's status (the controller's
LoadBalancer IP), as the suite does from outside a cluster.

A feature's Background runs once, before its first scenario, in a namespace of its own that
its scenarios share and that is deleted (and waited for) after its last one; the suite's
godog runs it again before each scenario, which here would only repeat the same Deployments
(the scenarios send requests and change nothing). A namespace a scenario creates itself
is deleted after it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import pod_ready, running_cluster
from tests.e2e.harness import wait_for
from tests.e2e.ingress_conformance import gherkin
from tests.e2e.ingress_conformance.steps import (
    State,
    StepFailed,
    Suite,
    delete_namespace,
    run_step,
)
from tests.e2e.test_ingress import controller_pod, lb_ip
from tests.e2e.test_outside_hosts import net

pytestmark = pytest.mark.e2e

FEATURES = Path(__file__).parent / "ingress_conformance"
INGRESS_CLASS = "kubesvc"
CLIENT_HOST = "client"


def scenarios() -> Iterator[object]:
    for path in sorted(FEATURES.glob("*.feature")):
        feature = gherkin.parse(path.read_text())
        for pickle in gherkin.pickles(feature):
            yield pytest.param(path.stem, feature, pickle, id=f"{path.stem}:{pickle.line}")


class Runner:
    """Runs scenarios feature by feature, each feature's Background once."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.current: str | None = None
        self.background: State | StepFailed = State()

    def run(self, stem: str, feature: gherkin.Feature, pickle: gherkin.Pickle) -> None:
        if stem != self.current:
            self.finish()
            self.current = stem
            self.background = self._background(feature)
        if isinstance(self.background, StepFailed):
            raise StepFailed(f"the Background of {stem} failed: {self.background}")
        state = self.background.fresh()
        try:
            self._steps(state, pickle.steps)
        finally:
            if state.namespace and state.namespace != self.background.namespace:
                delete_namespace(self.suite.cluster, state.namespace)

    def _background(self, feature: gherkin.Feature) -> State | StepFailed:
        state = State()
        try:
            self._steps(state, feature.background)
        except Exception as exc:  # every scenario of the feature reports it
            if state.namespace:
                delete_namespace(self.suite.cluster, state.namespace)
            return exc if isinstance(exc, StepFailed) else StepFailed(repr(exc))
        return state

    def _steps(self, state: State, steps: tuple[gherkin.Step, ...]) -> None:
        for s in steps:
            try:
                run_step(self.suite, state, s)
            except (StepFailed, AssertionError) as exc:
                raise StepFailed(f"line {s.line}: {s.keyword} {s.text}\n  {exc}") from None

    def finish(self) -> None:
        bg = self.background
        if isinstance(bg, State) and bg.namespace:
            delete_namespace(self.suite.cluster, bg.namespace)
        self.current, self.background = None, State()


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-icc-", dir="/tmp"))
    try:
        with running_cluster(tmp, "icc") as c:
            wait_for(lambda: pod_ready(controller_pod(c)), timeout=60, what="the controller")
            lb_ip(c)  # the status then shows the LoadBalancer IP, not the nodes'
            c.kubesvc("host", "add", CLIENT_HOST, "--name", c.name)
            suite = Suite(c, INGRESS_CLASS, net(c).outside_host_netns(CLIENT_HOST))
            r = Runner(suite)
            try:
                yield r
            finally:
                r.finish()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize(("stem", "feature", "pickle"), list(scenarios()))
def test_scenario(
    runner: Runner, stem: str, feature: gherkin.Feature, pickle: gherkin.Pickle
) -> None:
    runner.run(stem, feature, pickle)
