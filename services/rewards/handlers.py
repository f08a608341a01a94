"""The rewards service's event handlers, one registry: points' answers in the redemption saga."""

from services.rewards.saga import confirm_redemption, note_refund, reject_redemption

HANDLERS = {
    "PointsDebited": confirm_redemption,
    "DebitRejected": reject_redemption,
    "PointsRefunded": note_refund,
}
