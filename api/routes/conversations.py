"""What the chatbot reports back: conversation transcripts."""

from __future__ import annotations

from fastapi import APIRouter

from api.checked import CheckedRoute
from api.deps import CHATBOT, BotDep, ServicesDep
from api.schemas import IngestOut
from core.conversations import ConversationBatch, ingest_batch

router = APIRouter(prefix="/api/v1/bots/{slug}", tags=["conversations"],
                   route_class=CheckedRoute)


@router.post("/conversations", dependencies=[CHATBOT], response_model=IngestOut)
def ingest(body: ConversationBatch, bot: BotDep, svc: ServicesDep) -> IngestOut:
    """Store a batch of transcripts. The whole batch is validated first (422 names the index
    and field of the first problem, and nothing is written); re-sending an id replaces it."""
    accepted, updated = ingest_batch(svc.engine, bot_id=bot.id,
                                     conversations=body.conversations)
    return IngestOut(accepted=accepted, updated=updated)
