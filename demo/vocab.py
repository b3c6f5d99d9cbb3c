"""Vocabulary of the synthetic catalog: categories, product types, colors, features.

Every attribute has a canonical word (used by literal golden queries and, part of the
time, by product titles) and paraphrases (shade names in titles, synonyms in
paraphrased queries). Relevance is defined on the canonical attribute values only.
"""

from __future__ import annotations

from typing import NamedTuple


class ProductType(NamedTuple):
    """One kind of product: its display names, features and materials."""

    key: str
    category: str
    names: tuple[str, ...]  # names[0] is canonical; the rest appear in titles too
    query_names: tuple[str, ...]  # paraphrases used only by paraphrased queries
    features: tuple[str, ...]
    materials: tuple[str, ...]
    price: tuple[float, float]
    audiences: bool = False


# Colors: canonical -> (shade names shown in titles, query paraphrases).
COLORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "red": (("crimson", "scarlet", "cherry red"), ("crimson", "scarlet", "ruby")),
    "blue": (("navy blue", "cobalt", "royal blue"), ("navy", "cobalt", "azure")),
    "green": (("olive green", "forest green", "emerald"), ("olive", "emerald", "forest green")),
    "black": (("jet black", "onyx", "midnight black"), ("jet black", "onyx", "ebony")),
    "white": (("ivory", "snow white", "off-white"), ("ivory", "snow white", "off-white")),
    "gray": (("charcoal", "slate gray", "graphite"), ("charcoal", "slate", "graphite")),
    "yellow": (("mustard yellow", "lemon", "sunflower yellow"), ("mustard", "lemon", "golden")),
    "orange": (("tangerine", "burnt orange", "amber"), ("tangerine", "burnt orange", "amber")),
    "pink": (("blush pink", "rose", "fuchsia"), ("blush", "rose", "fuchsia")),
    "purple": (("violet", "plum", "lavender"), ("violet", "plum", "lavender")),
    "brown": (("chocolate brown", "tan", "walnut"), ("chocolate", "tan", "walnut")),
    "beige": (("sand", "khaki", "oatmeal"), ("sand-colored", "khaki", "oatmeal")),
}

# Features: canonical -> (sentence used in descriptions, query paraphrases).
FEATURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "waterproof": ("Fully waterproof, so it stays dry in heavy rain.", ("rain-proof", "watertight")),
    "insulated": ("Insulated to keep warmth in on cold days.", ("thermal",)),
    "lightweight": ("Lightweight enough to carry all day.", ("ultralight", "featherweight")),
    "breathable": ("Breathable fabric lets air flow through.", ("ventilated",)),
    "wireless": ("Wireless connection with no cables to tangle.", ("cordless", "cable-free")),
    "noise-cancelling": (
        "Active noise-cancelling blocks out the world around you.",
        ("noise-canceling",),
    ),
    "rechargeable": ("Rechargeable battery charges over USB-C.", ("USB-charged",)),
    "foldable": ("Foldable design packs away in seconds.", ("collapsible", "fold-flat")),
    "non-stick": ("Non-stick coating releases food easily.", ("nonstick", "stick-resistant")),
    "dishwasher-safe": ("Dishwasher-safe for easy cleanup.", ("dishwasher-friendly",)),
    "adjustable": ("Adjustable to fit you exactly.", ("height-adjustable",)),
    "ergonomic": ("Ergonomic shape supports a natural posture.", ("posture-friendly",)),
    "reflective": ("Reflective details keep you visible at night.", ("high-visibility",)),
    "padded": ("Padded for extra comfort and protection.", ("cushioned",)),
    "quick-dry": ("Quick-dry material sheds moisture fast.", ("fast-drying",)),
    "programmable": ("Programmable timer starts it when you want.", ("timer-equipped",)),
    "portable": ("Portable and easy to take anywhere.", ("travel-size",)),
    "organic": ("Made with certified organic materials.", ("eco-friendly",)),
    "washable": ("Machine washable for easy care.", ("machine-washable",)),
    "smart": ("Smart app control from your phone.", ("wifi-connected",)),
}

AUDIENCES: dict[str, tuple[str, ...]] = {
    "men": ("men's", "for men", "for him"),
    "women": ("women's", "for women", "for her"),
    "kids": ("kids'", "for kids", "for children"),
    "unisex": ("unisex", "for everyone", "for anyone"),
}

_FOOT = ("leather", "suede", "mesh", "synthetic", "rubber")
_TEXTILE = ("cotton", "polyester", "nylon", "wool", "fleece", "linen")
_HARD = ("aluminum", "plastic", "stainless steel", "wood", "bamboo", "glass")
_TECH = ("plastic", "aluminum", "silicone", "fabric")

PRODUCT_TYPES: tuple[ProductType, ...] = (
    # Footwear
    ProductType("hiking_boots", "footwear", ("hiking boots", "trail boots"), ("trekking boots", "mountain boots"), ("waterproof", "insulated", "lightweight", "breathable", "padded"), _FOOT, (60, 220), True),
    ProductType("running_shoes", "footwear", ("running shoes", "runners"), ("jogging sneakers", "road trainers"), ("lightweight", "breathable", "reflective", "padded", "waterproof"), _FOOT, (45, 180), True),
    ProductType("rain_boots", "footwear", ("rain boots", "wellies"), ("rubber galoshes", "puddle boots"), ("waterproof", "insulated", "lightweight", "padded"), ("rubber", "neoprene", "PVC"), (25, 110), True),
    ProductType("sandals", "footwear", ("sandals", "slides"), ("flip-flops", "open-toe shoes"), ("waterproof", "lightweight", "padded", "quick-dry", "adjustable"), _FOOT, (15, 90), True),
    ProductType("sneakers", "footwear", ("sneakers", "trainers"), ("casual kicks", "canvas shoes"), ("lightweight", "breathable", "washable", "padded", "organic"), _FOOT, (35, 150), True),
    # Apparel
    ProductType("rain_jacket", "apparel", ("rain jacket", "rain shell"), ("raincoat", "storm coat"), ("waterproof", "breathable", "lightweight", "reflective", "foldable"), ("nylon", "polyester", "Gore-Tex"), (40, 260), True),
    ProductType("down_jacket", "apparel", ("down jacket", "puffer jacket"), ("winter parka", "quilted coat"), ("insulated", "lightweight", "waterproof", "foldable", "washable"), ("nylon", "polyester"), (80, 350), True),
    ProductType("hoodie", "apparel", ("hoodie", "hooded sweatshirt"), ("pullover sweatshirt", "hooded top"), ("organic", "washable", "breathable", "insulated", "lightweight"), _TEXTILE, (25, 95), True),
    ProductType("t_shirt", "apparel", ("t-shirt", "tee"), ("short-sleeve top", "crew neck shirt"), ("organic", "breathable", "quick-dry", "washable", "lightweight"), _TEXTILE, (10, 45), True),
    ProductType("leggings", "apparel", ("leggings", "tights"), ("yoga pants", "workout pants"), ("quick-dry", "breathable", "reflective", "organic", "insulated"), ("spandex", "nylon", "cotton"), (20, 90), True),
    # Audio
    ProductType("headphones", "audio", ("headphones", "over-ear headphones"), ("headset", "cans"), ("wireless", "noise-cancelling", "foldable", "padded", "rechargeable"), _TECH, (30, 400)),
    ProductType("earbuds", "audio", ("earbuds", "in-ear buds"), ("earphones", "true wireless buds"), ("wireless", "noise-cancelling", "waterproof", "rechargeable", "lightweight"), _TECH, (20, 280)),
    ProductType("bluetooth_speaker", "audio", ("bluetooth speaker", "portable speaker"), ("wireless loudspeaker", "boombox"), ("waterproof", "rechargeable", "portable", "smart", "lightweight"), _TECH, (25, 300)),
    ProductType("soundbar", "audio", ("soundbar", "sound bar"), ("TV speaker bar", "home theater speaker"), ("wireless", "smart", "programmable", "adjustable"), _TECH, (80, 700)),
    ProductType("turntable", "audio", ("turntable", "record player"), ("vinyl player", "phonograph"), ("wireless", "portable", "adjustable", "programmable"), ("wood", "aluminum", "plastic"), (70, 600)),
    # Kitchen
    ProductType("coffee_maker", "kitchen", ("coffee maker", "drip coffee machine"), ("coffee brewer", "espresso machine"), ("programmable", "smart", "dishwasher-safe", "portable", "insulated"), _HARD, (30, 350)),
    ProductType("blender", "kitchen", ("blender", "countertop blender"), ("smoothie maker", "food mixer"), ("portable", "rechargeable", "dishwasher-safe", "programmable", "smart"), _HARD, (25, 300)),
    ProductType("frying_pan", "kitchen", ("frying pan", "skillet"), ("fry pan", "saute pan"), ("non-stick", "dishwasher-safe", "lightweight", "ergonomic"), ("cast iron", "stainless steel", "aluminum", "ceramic"), (20, 160)),
    ProductType("electric_kettle", "kitchen", ("electric kettle", "water kettle"), ("tea kettle", "water boiler"), ("programmable", "smart", "insulated", "portable", "dishwasher-safe"), ("stainless steel", "glass", "plastic"), (20, 150)),
    ProductType("chef_knife", "kitchen", ("chef's knife", "kitchen knife"), ("cook's knife", "cooking blade"), ("ergonomic", "dishwasher-safe", "lightweight", "non-stick"), ("stainless steel", "carbon steel", "ceramic"), (15, 250)),
    # Home & furniture
    ProductType("office_chair", "furniture", ("office chair", "desk chair"), ("task chair", "work seat"), ("ergonomic", "adjustable", "padded", "breathable", "foldable"), ("mesh", "leather", "fabric"), (80, 600)),
    ProductType("desk_lamp", "furniture", ("desk lamp", "table lamp"), ("reading light", "task light"), ("adjustable", "rechargeable", "smart", "foldable", "portable"), _HARD, (15, 140)),
    ProductType("bookshelf", "furniture", ("bookshelf", "bookcase"), ("shelving unit", "book rack"), ("adjustable", "foldable", "lightweight", "organic"), ("wood", "bamboo", "metal", "walnut veneer"), (40, 400)),
    ProductType("sofa", "furniture", ("sofa", "couch"), ("settee", "loveseat"), ("padded", "washable", "foldable", "organic", "adjustable"), ("linen", "velvet", "leather", "cotton"), (300, 2200)),
    ProductType("area_rug", "furniture", ("area rug", "rug"), ("floor carpet", "living room mat"), ("washable", "organic", "padded", "waterproof"), ("wool", "jute", "cotton", "polyester"), (40, 600)),
    # Bags
    ProductType("backpack", "bags", ("backpack", "daypack"), ("rucksack", "knapsack"), ("waterproof", "lightweight", "padded", "reflective", "foldable"), ("nylon", "canvas", "polyester", "leather"), (25, 220), True),
    ProductType("duffel_bag", "bags", ("duffel bag", "gym bag"), ("weekender", "holdall"), ("waterproof", "foldable", "lightweight", "padded"), ("nylon", "canvas", "leather"), (30, 250)),
    ProductType("laptop_sleeve", "bags", ("laptop sleeve", "laptop case"), ("notebook pouch", "computer cover"), ("padded", "waterproof", "lightweight", "organic"), ("neoprene", "felt", "leather", "canvas"), (15, 80)),
    ProductType("tote_bag", "bags", ("tote bag", "shopping tote"), ("carryall", "shoulder bag"), ("organic", "foldable", "washable", "waterproof"), ("canvas", "cotton", "jute", "leather"), (10, 150), True),
    ProductType("wallet", "bags", ("wallet", "billfold"), ("card holder", "purse"), ("lightweight", "organic", "waterproof", "smart"), ("leather", "canvas", "aluminum"), (15, 120), True),
    # Outdoor
    ProductType("tent", "outdoor", ("tent", "camping tent"), ("shelter", "dome tent"), ("waterproof", "lightweight", "foldable", "breathable", "insulated"), ("nylon", "polyester", "canvas"), (60, 700)),
    ProductType("sleeping_bag", "outdoor", ("sleeping bag", "mummy bag"), ("sleep sack", "camping bedroll"), ("insulated", "lightweight", "waterproof", "washable", "foldable"), ("nylon", "polyester", "down"), (35, 400)),
    ProductType("camping_stove", "outdoor", ("camping stove", "backpacking stove"), ("camp burner", "outdoor cooker"), ("portable", "lightweight", "foldable", "adjustable"), ("stainless steel", "aluminum", "titanium"), (25, 200)),
    ProductType("headlamp", "outdoor", ("headlamp", "head torch"), ("head flashlight", "forehead light"), ("rechargeable", "waterproof", "lightweight", "adjustable", "reflective"), _TECH, (10, 90)),
    ProductType("water_bottle", "outdoor", ("water bottle", "drinking bottle"), ("hydration flask", "canteen"), ("insulated", "dishwasher-safe", "lightweight", "foldable", "portable"), ("stainless steel", "glass", "plastic", "silicone"), (8, 60)),
    # Fitness
    ProductType("yoga_mat", "fitness", ("yoga mat", "exercise mat"), ("pilates mat", "workout mat"), ("padded", "foldable", "organic", "lightweight", "washable"), ("rubber", "cork", "TPE", "jute"), (15, 130)),
    ProductType("dumbbells", "fitness", ("dumbbells", "hand weights"), ("free weights", "barbell set"), ("adjustable", "ergonomic", "padded"), ("cast iron", "rubber", "neoprene"), (20, 400)),
    ProductType("bike_helmet", "fitness", ("bike helmet", "cycling helmet"), ("bicycle helmet", "road helmet"), ("adjustable", "reflective", "lightweight", "breathable", "padded"), ("polycarbonate", "EPS foam", "carbon fiber"), (30, 250), True),
    ProductType("fitness_tracker", "fitness", ("fitness tracker", "activity tracker"), ("smartwatch", "step counter"), ("waterproof", "rechargeable", "smart", "lightweight", "wireless"), _TECH, (25, 300), True),
    ProductType("jump_rope", "fitness", ("jump rope", "skipping rope"), ("speed rope", "cardio rope"), ("adjustable", "lightweight", "ergonomic", "smart"), ("PVC", "steel cable", "leather"), (8, 60)),
    # Computing
    ProductType("keyboard", "computing", ("keyboard", "mechanical keyboard"), ("keypad", "typing deck"), ("wireless", "ergonomic", "rechargeable", "foldable", "waterproof"), _TECH, (20, 250)),
    ProductType("computer_mouse", "computing", ("computer mouse", "mouse"), ("trackball", "pointing device"), ("wireless", "ergonomic", "rechargeable", "lightweight", "adjustable"), _TECH, (10, 150)),
    ProductType("monitor", "computing", ("monitor", "computer monitor"), ("display screen", "PC screen"), ("adjustable", "smart", "lightweight", "ergonomic"), ("plastic", "aluminum"), (100, 1200)),
    ProductType("laptop_stand", "computing", ("laptop stand", "laptop riser"), ("notebook holder", "computer stand"), ("adjustable", "foldable", "portable", "ergonomic", "lightweight"), ("aluminum", "wood", "bamboo", "plastic"), (15, 120)),
    ProductType("phone_case", "computing", ("phone case", "phone cover"), ("smartphone shell", "mobile bumper"), ("waterproof", "padded", "lightweight", "wireless", "organic"), ("silicone", "leather", "plastic", "TPU"), (8, 70)),
    # Home textiles
    ProductType("blanket", "textiles", ("blanket", "throw blanket"), ("bed throw", "comforter"), ("washable", "organic", "insulated", "lightweight", "breathable"), ("wool", "fleece", "cotton", "cashmere"), (20, 250)),
    ProductType("pillow", "textiles", ("pillow", "bed pillow"), ("cushion", "sleeping pillow"), ("washable", "organic", "adjustable", "breathable", "ergonomic"), ("memory foam", "down", "cotton", "buckwheat"), (15, 150)),
    ProductType("bath_towel", "textiles", ("bath towel", "towel"), ("bath sheet", "shower towel"), ("quick-dry", "organic", "washable", "lightweight"), ("cotton", "bamboo", "linen", "microfiber"), (8, 80)),
    ProductType("bed_sheets", "textiles", ("bed sheets", "sheet set"), ("bedding set", "bed linen"), ("organic", "breathable", "washable", "quick-dry"), ("cotton", "linen", "bamboo", "silk"), (30, 300)),
    ProductType("curtains", "textiles", ("curtains", "window drapes"), ("window panels", "blackout blinds"), ("insulated", "washable", "waterproof", "adjustable", "organic"), ("linen", "velvet", "polyester", "cotton"), (20, 200)),
)

BRANDS: tuple[str, ...] = (
    "Northpeak", "Alderwood", "Brightline", "Cascadia", "Driftwell", "Emberly", "Fjordlin",
    "Glenmore", "Harborlane", "Ironbark", "Juniper & Co", "Kestrel", "Lumina", "Meridian",
    "Nimbus", "Oakridge", "Pinecrest", "Quillon", "Redfern", "Solstice", "Tidewater",
    "Umbra", "Vantage", "Willowby", "Xenith", "Yarrow", "Zephyrine", "Coralay", "Bramblewood",
    "Stonehaven",
)

FILLERS: tuple[str, ...] = (
    "Backed by a two-year warranty.",
    "Designed and tested by our team.",
    "A customer favorite season after season.",
    "Ships in recyclable packaging.",
    "Built to last with reinforced stitching and careful finishing.",
    "Pairs well with the rest of the collection.",
    "Easy to care for and simple to use.",
    "Great as a gift.",
    "Clean lines and a modern look.",
    "Made in small batches with attention to detail.",
    "Free returns within 30 days.",
    "Our most popular style, updated for this year.",
)
