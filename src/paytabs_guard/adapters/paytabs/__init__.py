"""The PayTabs PT2 connector, one module per concern (laid out like hyperswitch's connector).

* ``client``: the flows, one HTTP attempt each: create a hosted page, query, follow-ups
  (capture, void, refund, release), token charge, query and delete.
* ``callbacks``: what PayTabs sends us (callback/IPN and browser return), verified and read.
* ``resilient``: the flows behind breakers and the one retry policy; never charges twice.
* ``paytabs_gateway``: the service's ``Gateway`` port, domain in and domain out.
* ``transformers``: wire types and the conversions both ways (requests out, answers in).
* ``errors``: PayTabs failures, by what the caller must do next.
* ``signature``: HMAC signatures of callbacks and browser returns.
* ``regions``: ``Region`` and each region's host.
"""
