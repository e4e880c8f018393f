# The twistd plugin: kept light, the real work is in tsyncp_tx.tap, imported
# only when "twistd tsyncp" runs.
from twisted.application.service import ServiceMaker

tsyncp = ServiceMaker(
    "tsyncp_tx",
    "tsyncp_tx.tap",
    "Standalone tsyncp endpoints: barrier, sink, source, relay",
    "tsyncp",
)
