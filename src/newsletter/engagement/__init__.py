"""Engagement: opt-in open and click tracking that tells people from machines.

``links`` rewrites a campaign's HTML once per campaign (each link becomes a signed per-reader
redirect, plus an open pixel and a hidden canary link); ``classify`` decides who made a hit
(a person, Apple Mail Privacy Protection, a provider's image proxy, a link scanner);
``record`` stores hits in batches off the request path; ``report`` aggregates a campaign.
"""
