"""Webhook signing schemes other than PayTabs' own (that one lives in ``adapters.paytabs``).

``standard`` implements Standard Webhooks v1: the scheme of the events we send out and of
incoming relays that carry a signed timestamp.
"""
