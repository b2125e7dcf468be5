"""The router's memory of client-chosen (passthrough) model names is bounded."""

from chat.routing import PASSTHROUGH_HEALTH_ENTRIES, routers
from chat.upstream import UpstreamFailure
from mamba_site.errors import ProviderError


def passthrough_targets(router):
    declared = set(router._declared)
    return [target for target in router.health if target not in declared]


def test_routing_keeps_a_bounded_number_of_passthrough_targets():
    router = routers.get()
    names = [f"made-up-{index}" for index in range(PASSTHROUGH_HEALTH_ENTRIES + 100)]
    for name in names:
        [target] = router.resolve(name).targets  # any name passes through to the provider
        router.succeeded(target)
    kept = passthrough_targets(router)
    assert len(kept) == PASSTHROUGH_HEALTH_ENTRIES
    assert [target.model for target in kept] == names[-PASSTHROUGH_HEALTH_ENTRIES:]


def test_routing_forgets_idle_passthrough_targets_before_resting_ones():
    router = routers.get()
    [resting] = router.resolve("made-up-failing").targets
    failure = UpstreamFailure("status_500", ProviderError())
    for _ in range(router.provider(resting).cooldown_failures):
        router.failed(resting, failure)
    assert router.health[resting].cooled_until > router.clock()
    for index in range(PASSTHROUGH_HEALTH_ENTRIES + 10):
        [target] = router.resolve(f"made-up-{index}").targets
        router.succeeded(target)
    assert resting in router.health  # the oldest, but resting: kept while it rests
    assert len(passthrough_targets(router)) == PASSTHROUGH_HEALTH_ENTRIES
