"""One neuron across several processes (`jax.distributed`, one per host or per GPU).

Process 0 alone talks to the chain and writes to buckets; every decision that feeds the model
(chain reads, bucket reads, the clock that stops the inner loop, the gathered payloads) is made
once on process 0 and handed to the others (`Agreement`), so all processes run the same
programs on the same inputs. A heartbeat (`Watchdog`) ends every process within a bounded time
when one of them dies or stalls, with an error naming the host and the phase.

    mh = start(stall_timeout_s=60)          # after jax.distributed.initialize
    block = mh.agreement.value("chain.current_block", chain.current_block)

On one process `solo()` gives an `Agreement` that simply calls the function.
"""

from templar_jax.multihost.agree import Agreement, SoloAgreement, solo
from templar_jax.multihost.arrays import BatchFeed, host_array, host_tree
from templar_jax.multihost.bucket import AgreedBucket, agreement_of, local_bucket
from templar_jax.multihost.chain import AgreedChain
from templar_jax.multihost.errors import MultihostError
from templar_jax.multihost.runtime import Multihost, ProcessGroup, current_group, report_failure, start
from templar_jax.multihost.watchdog import Watchdog

__all__ = [
    "AgreedBucket", "AgreedChain", "Agreement", "BatchFeed", "Multihost", "MultihostError", "ProcessGroup",
    "SoloAgreement", "Watchdog", "agreement_of", "current_group", "host_array", "host_tree", "local_bucket",
    "report_failure", "solo", "start",
]
