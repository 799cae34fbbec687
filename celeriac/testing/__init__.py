"""Testing helpers: the pytest plugin (:mod:`.pytest`), :class:`~.clock.FakeClock` and the
contract suites."""
