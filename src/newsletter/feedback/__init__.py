"""What comes back after a send: bounces, complaints, auto-replies and unsubscribe emails.

Data flows one way: ``parse`` reads a message into :class:`~.model.Bounce` records (no
database), ``verp`` ties an envelope address back to a (campaign, subscriber), and the store
side applies the rules (hard, soft within a window, complaint) to one table of events,
whatever their source — a mailbox, a provider webhook, or an SMTP reply during our own send.
"""
