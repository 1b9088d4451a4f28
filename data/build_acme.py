"""Builds the Acme Corp demo data from one table of facts, so the FAQ, the product manuals and the
test sets always agree. Acme Corp and its products are fictional; every sentence here was written
for this project. Re-run with `python data/build_acme.py` after editing the facts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "acme"

PRODUCTS = [
    {
        "name": "Acme Aero Desk", "kind": "standing desk", "price": "$499", "warranty": "5 years",
        "spec1": ("height range", "62 to 127 cm"), "spec2": ("maximum load", "80 kg"),
        "colors": "oak, walnut and white", "setup": "about 30 minutes with the included hex key",
        "reset": "hold the up and down buttons together for 5 seconds",
        "extra": "It remembers four height presets.",
    },
    {
        "name": "Acme Lumen Lamp", "kind": "desk lamp", "price": "$79", "warranty": "2 years",
        "spec1": ("brightness", "800 lumens"), "spec2": ("colour temperature range", "2700 K to 6500 K"),
        "colors": "black and silver", "setup": "under 2 minutes: attach the arm and plug in the USB-C cable",
        "reset": "hold the touch ring for 10 seconds until the light blinks twice",
        "extra": "It has an auto-dim mode that follows daylight.",
    },
    {
        "name": "Acme Breeze Fan", "kind": "tower fan", "price": "$129", "warranty": "3 years",
        "spec1": ("noise level", "22 dB on the lowest setting"), "spec2": ("number of speeds", "9"),
        "colors": "white and graphite", "setup": "5 minutes: click the base onto the tower",
        "reset": "unplug it for 30 seconds and plug it back in",
        "extra": "The remote control is stored in a magnetic slot on the top.",
    },
    {
        "name": "Acme Cloud Router", "kind": "Wi-Fi 7 router", "price": "$199", "warranty": "3 years",
        "spec1": ("coverage", "up to 250 square metres"), "spec2": ("maximum connected devices", "200"),
        "colors": "white", "setup": "10 minutes through the Acme Home app",
        "reset": "press the recessed reset button on the back with a pin for 10 seconds",
        "extra": "Firmware updates install automatically at 3 a.m. local time.",
    },
    {
        "name": "Acme Spark Kettle", "kind": "electric kettle", "price": "$59", "warranty": "2 years",
        "spec1": ("capacity", "1.7 litres"), "spec2": ("boiling time", "about 3 minutes for a full kettle"),
        "colors": "stainless steel and matte black", "setup": "rinse it once and boil water twice before first use",
        "reset": "switch it off, let it cool for 10 minutes, then switch it on again",
        "extra": "It keeps water warm for up to 60 minutes.",
    },
    {
        "name": "Acme Echo Buds", "kind": "wireless earbuds", "price": "$149", "warranty": "1 year",
        "spec1": ("battery life", "8 hours, plus 24 hours from the charging case"),
        "spec2": ("water resistance rating", "IPX4"),
        "colors": "black, white and sage green", "setup": "open the case next to your phone and follow the pop-up",
        "reset": "put both buds in the case and hold the case button for 15 seconds",
        "extra": "Active noise cancellation is switched on by a long press on either bud.",
    },
    {
        "name": "Acme Sentry Cam", "kind": "indoor security camera", "price": "$179", "warranty": "2 years",
        "spec1": ("video resolution", "2K"), "spec2": ("free cloud video history", "30 days"),
        "colors": "white", "setup": "5 minutes: scan the QR code on the base with the Acme Home app",
        "reset": "hold the button under the lens for 8 seconds until the light turns amber",
        "extra": "A privacy shutter covers the lens when you are home.",
    },
    {
        "name": "Acme Pulse Watch", "kind": "fitness watch", "price": "$249", "warranty": "2 years",
        "spec1": ("battery life", "7 days"), "spec2": ("water resistance", "50 metres"),
        "colors": "midnight, sand and coral", "setup": "pair it with the Acme Fit app in about 3 minutes",
        "reset": "hold the side button for 12 seconds and choose Reset",
        "extra": "It tracks sleep, heart rate and 40 kinds of workouts.",
    },
]

# (fact id, answer, [training phrasings], held-out test phrasing, string the answer must contain)
POLICIES = [
    ("returns", "You can return any Acme product within 30 days of delivery for a full refund, as long as it is "
     "in its original packaging.", ["What is your return policy?", "Can I return a product?",
                                     "How many days do I have to return an item?", "Can I send back something I bought?"],
     "If I change my mind, how long can I wait before sending a product back?", "30 days"),
    ("refund_time", "Refunds reach your original payment method within 5 business days after we receive the "
     "return.", ["How long does a refund take?", "When will I get my money back?"],
     "After you receive my returned item, how quickly is the refund paid?", "5 business days"),
    ("free_shipping", "Shipping is free on orders over $50; smaller orders pay a flat $6.", [
        "Is shipping free?", "How much does shipping cost?", "Do you charge for delivery?",
        "Is there a delivery fee?"],
     "What is the minimum order for free delivery?", "$50"),
    ("standard_delivery", "Standard delivery takes 3 to 5 business days.", [
        "How long does delivery take?", "When will my order arrive with standard shipping?"],
     "How many business days does standard delivery take?", "3 to 5"),
    ("express", "Express delivery arrives in 1 to 2 business days and costs $15.", [
        "Do you offer express shipping?", "How much is express delivery?"],
     "What does express delivery cost?", "$15"),
    ("international", "We ship to 40 countries. Import duties are shown at checkout.", [
        "Do you ship internationally?", "Which countries do you deliver to?"],
     "How many countries does Acme ship to?", "40 countries"),
    ("hours", "Our support team is available Monday to Friday, 8:00 to 20:00 Central European Time.", [
        "What are your support hours?", "When can I reach customer support?", "Is support open on weekends?",
        "What time does support open?"],
     "At what times is the support team reachable?", "8:00 to 20:00"),
    ("contact", "Email support@acme.example or use the chat in the Acme Home app; we reply within 24 hours.", [
        "How do I contact support?", "What is your support email?", "How can I get help from Acme?"],
     "Which email address should I write to for help?", "support@acme.example"),
    ("tracking", "Track your order at acme.example/track with your order number and email address.", [
        "How do I track my order?", "Where can I see my delivery status?"],
     "Where can I follow my parcel?", "acme.example/track"),
    ("payment", "We accept Visa, Mastercard, American Express, PayPal and Alipay.", [
        "Which payment methods do you accept?", "Can I pay with PayPal?"],
     "Do you take Alipay?", "Alipay"),
    ("student", "Students get 10% off with a valid student email address.", [
        "Do you have a student discount?", "Is there a discount for students?"],
     "How much discount do students receive?", "10%"),
    ("price_match", "If the price of an item drops within 14 days of purchase, we refund the difference.", [
        "Do you offer price protection?", "What happens if the price drops after I buy?"],
     "How long after buying is the price-drop refund valid?", "14 days"),
    ("loyalty", "Acme Rewards gives 1 point for every dollar spent; 100 points are worth $5.", [
        "How does the loyalty program work?", "What are Acme Rewards points worth?"],
     "How many points do I earn per dollar?", "1 point"),
    ("warranty_claim", "To claim warranty, open a ticket with your order number and a short video of the problem.",
     ["How do I make a warranty claim?", "My product broke, how do I use the warranty?"],
     "What do I need to send to start a warranty claim?", "order number"),
    ("recycling", "Send back any old Acme device for free recycling with a prepaid label from acme.example/recycle.", [
        "Do you recycle old devices?", "How can I recycle my Acme product?"],
     "Where do I get a label to recycle an old device?", "acme.example/recycle"),
    ("gift_cards", "Gift cards come in $25, $50 and $100 and never expire.", [
        "Do you sell gift cards?", "Do Acme gift cards expire?"],
     "Which gift card amounts are available?", "$25"),
    ("account_delete", "You can delete your account under Settings > Privacy in the Acme Home app; it takes effect "
     "within 48 hours.", ["How do I delete my account?", "Can I remove my Acme account?"],
     "How long does account deletion take to take effect?", "48 hours"),
    ("order_change", "You can change or cancel an order within 1 hour of placing it from your order page.", [
        "Can I cancel my order?", "How do I change my order?"],
     "How long do I have to cancel an order after placing it?", "1 hour"),
]

PRODUCT_QUESTIONS = [
    ("price", "How much does the {name} cost?", "The {name} costs {price}.",
     ["What is the price of the {name}?", "How much is the {name}?"], "What does the {name} sell for?", "{price}"),
    ("warranty", "What is the warranty on the {name}?", "The {name} comes with a {warranty} warranty.",
     ["How long is the {name} warranty?"], "For how long is the {name} covered by warranty?", "{warranty}"),
    ("spec1", "What is the {spec1_label} of the {name}?", "The {name} has a {spec1_label} of {spec1_value}.",
     ["Tell me the {spec1_label} of the {name}."], "What {spec1_label} does the {name} offer?", "{spec1_short}"),
    ("spec2", "What is the {spec2_label} of the {name}?", "The {name}'s {spec2_label} is {spec2_value}.",
     [], "Could you tell me the {spec2_label} for the {name}?", "{spec2_short}"),
    ("colors", "What colours does the {name} come in?", "The {name} is available in {colors}.",
     ["Which colors is the {name} available in?"], "In which colours can I buy the {name}?", None),
    ("setup", "How do I set up the {name}?", "Setting up the {name} takes {setup}.",
     ["How long does the {name} take to set up?"], "What does installing the {name} involve?", None),
    ("reset", "How do I reset the {name}?", "To reset the {name}, {reset}.",
     ["My {name} is not responding, what should I do?"], "What are the steps to factory reset the {name}?", None),
]


def first_token(value: str) -> str:
    return value.split(",")[0].split(" plus")[0].strip()


def product_values(product: dict) -> dict:
    values = {k: v for k, v in product.items() if isinstance(v, str)}
    for key in ("spec1", "spec2"):
        label, value = product[key]
        values.update({f"{key}_label": label, f"{key}_value": value, f"{key}_short": first_token(value)})
    return values


def build_faq() -> list[dict]:
    rows = []
    for fact, answer, phrasings, _, _ in POLICIES:
        for question in phrasings:
            rows.append({"question": question, "answer": answer, "topic": f"support/{fact}"})
    for product in PRODUCTS:
        values = product_values(product)
        for fact, question, answer, more, _, _ in PRODUCT_QUESTIONS:
            for phrasing in [question, *more]:
                text = answer.format(**values)
                if fact == "setup":
                    text += " " + product["extra"]
                rows.append({"question": phrasing.format(**values), "answer": text, "topic": f"product/{fact}"})
    return rows


def build_tests() -> dict[str, list[dict]]:
    support = [{"prompt": test_q, "references": [must], "metric": "contains", "domain": "support", "id": fact, "max_new_tokens": 32}
               for fact, _, _, test_q, must in POLICIES]
    product_rows = []
    for product in PRODUCTS:
        values = product_values(product)
        for fact, _, _, _, test_q, must in PRODUCT_QUESTIONS:
            if must is None:
                continue
            product_rows.append({"prompt": test_q.format(**values), "references": [must.format(**values)],
                                 "metric": "contains", "domain": "product", "max_new_tokens": 32,
                                 "id": f"{values['name'].lower().replace(' ', '-')}/{fact}"})
    return {"support": support, "product": product_rows}


def build_manual(product: dict) -> str:
    v = product_values(product)
    return (
        f"# {v['name']} user manual\n\n"
        f"The {v['name']} is a {v['kind']} designed by Acme Corp. It sells for {v['price']} and is covered by a "
        f"{v['warranty']} warranty from the date of delivery.\n\n"
        f"## Specifications\n\nThe {v['spec1_label']} of the {v['name']} is {v['spec1_value']}. Its "
        f"{v['spec2_label']} is {v['spec2_value']}. It is available in {v['colors']}. {product['extra']}\n\n"
        f"## Getting started\n\nSetting up the {v['name']} takes {v['setup']}. Keep the box for the first 30 days "
        f"in case you want to return it.\n\n"
        f"## Troubleshooting\n\nIf the {v['name']} stops responding, {v['reset']}. This restores the factory "
        f"settings. If the problem continues, contact Acme support with your order number.\n"
    )


def main() -> None:
    OUT.mkdir(exist_ok=True)
    faq = build_faq()
    with open(OUT / "faq.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["question", "answer", "topic"])
        writer.writeheader()
        writer.writerows(faq)
    (OUT / "tests").mkdir(exist_ok=True)
    for domain, rows in build_tests().items():
        with open(OUT / "tests" / f"{domain}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    (OUT / "manual").mkdir(exist_ok=True)
    for product in PRODUCTS:
        slug = product["name"].lower().replace("acme ", "").replace(" ", "-")
        (OUT / "manual" / f"{slug}.md").write_text(build_manual(product), encoding="utf-8")
    print(f"faq rows: {len(faq)}; tests: {', '.join(f'{k} {len(v)}' for k, v in build_tests().items())}")


if __name__ == "__main__":
    main()
