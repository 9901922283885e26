"""A telecom help desk whose agents answer from canned macros: topics, and two macro shapes."""

from __future__ import annotations

# Each topic: customers' questions, and the body an agent pastes into the macro. Neighbouring
# topics (ordering a SIM, when it arrives, an eSIM) are asked in much the same words.
TOPICS: dict[str, tuple[list[str], str]] = {
    "sim_order": (["How do I order a physical SIM card?", "can i get a plastic sim sent to me",
                   "I want to order a new SIM card", "where do I request a physical sim?"],
                  "To order a physical SIM, open My Plan > SIM and choose Order SIM; the SIM "
                  "itself is free."),
    "sim_arrival": (["When will my SIM card arrive?", "my sim still hasn't arrived, how long?",
                     "how many days for the sim card to be delivered",
                     "SIM card delivery time?"],
                    "SIM cards are posted the next working day and arrive within 2 to 4 days "
                    "by Royal Mail."),
    "esim": (["How do I set up an eSIM?", "can I use an esim instead of a sim card",
              "eSIM activation on my iPhone?", "how to switch my sim to esim"],
             "Scan the QR code shown in My Plan > eSIM from your phone's mobile settings."),
    "roaming": (["Can I use my phone abroad?", "does my plan work in Spain",
                 "roaming charges in the USA?", "will my data work when I travel to France"],
                "Roaming in the EU is included in every plan; elsewhere it costs 5 pounds a "
                "day."),
    "bill": (["Why is my bill higher this month?", "my bill went up, why?",
              "I was charged more than usual on my bill", "extra charges on my phone bill"],
             "Extra charges appear under Usage on your bill; calls outside your plan are "
             "billed per minute."),
    "port": (["Can I keep my number if I switch to you?", "how do i transfer my old number",
              "I want to bring my number from another network", "port my number to your network"],
             "Text PAC to 65075 for your switching code, then enter it when you sign up."),
}

AGENTS = ["Priya Shah", "Tom Evans"]


def slot_macro(topic: str) -> str:
    """A one-line macro with a fill-in slot: a greeting, "Regarding {topic}: {body}", a
    sign-off."""
    name = topic.replace("_", " ")
    return (f"Hi there, thanks for contacting Telco support! Regarding {name}: "
            f"{TOPICS[topic][1]} Is there anything else I can help you with today?")


def signature_macro(topic: str, agent: int = 0) -> str:
    """A company's long macro: a greeting, the body, a sentence every reply carries, and a
    signature with the agent's name, contact lines and legal text."""
    return (f"Hello,\n\n{TOPICS[topic][1]}\nOur support team is available 24/7 in the "
            f"Telco app.\n\nKind regards,\n{AGENTS[agent % len(AGENTS)]}\nTelco Customer "
            "Care\nwww.telco.example | 0800 000 000\nThis message and any attachments are "
            "confidential and intended solely for the addressee.")
