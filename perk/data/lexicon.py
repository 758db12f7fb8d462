"""Word lists for every generator, with a deterministic train/val/test split of the words that
name things a question asks about (people, surnames, needle keys and values, API code names).

A word's split is fixed by a stable hash of (kind, word): test names and keys never occur in
train or val data, so a model cannot memorise test answers. Kinds are disjoint (a word belongs to
one kind only), which is what makes the split meaningful. `all_words()` feeds the tokenizer's
`must_include` so each word is a single token for the tiny model.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

# Held out three ways: keys, names and API names of test examples never occur in training. Needle
# values are shared: they are drawn at random per context, so nothing about them can be memorised,
# and a model trained from scratch could never produce a word it has never seen as an answer.
SPLIT_KINDS = ("person", "surname", "key", "api")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train, val, test

_RAW = {
    # ------------------------------------------------------------ split kinds
    "person": """
Alice Bella Clara Daisy Emma Fiona Grace Hazel Irene Julia Karen Laura Mabel Nora Olive Paula Quinn Rosa
Sarah Tessa Ursula Vera Wendy Xena Yara Zoe Adam Brian Colin David Edgar Frank George Henry Isaac Jacob
Kevin Lucas Martin Nathan Oscar Peter Ralph Samuel Thomas Victor Walter Xavier Yusuf Zachary Abigail Agnes
Amber Andrea Angela Anita Beatrice Bianca Brenda Bridget Camille Carmen Cecilia Celeste Chloe Cora Delia
Denise Diana Dora Edith Elena Eliza Elsa Esther Eva Flora Frida Gemma Gloria Greta Helena Hilda Ida Ingrid
Iris Ivy Jane Jasmine Joan Judith June Kate Kira Lena Lila Linda Lucy Lydia Maria Marta Maya Mila Mira
Molly Nadia Nina Norma Opal Petra Phoebe Pia Rachel Rita Ruby Ruth Sabrina Selma Sonia Stella Susan Tara
Thea Tina Uma Valerie Violet Vivian Wanda Yvonne Zara Alan Albert Alfred Andrew Arthur Barry Benjamin
Bernard Bruce Caleb Carl Cedric Charles Clark Daniel Dennis Derek Dominic Douglas Duncan Edward Elias
Elliot Emil Eric Ernest Ethan Felix Fred Gabriel Gavin Gordon Graham Gregory Harold Harvey Hector Hugo Ian
Ivan Jack James Jasper Jerome Joel Jonas Joseph Julian Karl Keith Leo Leon Lewis Louis Luke Malcolm Marcus
Mario Matthew Max Miles Milo Morgan Neil Nelson Noah Norman Oliver Omar Otto Owen Patrick Paul Philip
Quentin Raymond Rex Robert Roger Roland Rufus Russell Ryan Scott Sean Simon Stanley Stefan Steven Theo
Tobias Trevor Tristan Vincent Wallace Warren Wesley William Xander Yosef Zane Anton Boris Cyril Dmitri Enzo
Fabio Gustav Hans Igor Jonah Kurt Lars Magnus Nils Olaf Pablo Rafael Sergio Tomas Ulrich Viktor Wilhelm
""",
    "surname": """
Adams Baker Barnes Bell Bennett Brooks Brown Burke Butler Campbell Carter Chapman Clarke Cole Collins Cook
Cooper Cox Crawford Cross Davies Dawson Dixon Doyle Edwards Ellis Evans Fisher Fleming Fletcher Ford Foster
Fox Fraser Gibson Gill Grant Gray Green Griffin Hall Hamilton Harper Harris Hart Hayes Henderson Hill Holmes
Hooper Howard Hudson Hughes Hunt Hunter Jackson Jenkins Johnson Jones Kelly Kennedy King Knight Lambert Lane
Lawson Lee Lloyd Lowe Marsh Marshall Mason Matthews Miller Mills Mitchell Moore Morris Murphy Murray Nash
Newman Nichols Norris Owens Palmer Parker Payne Pearce Perry Porter Powell Price Reed Reid Reynolds Rhodes
Richards Riley Roberts Robinson Rogers Rose Ross Saunders Shaw Simpson Smith Spencer Stevens Stone Sutton
Taylor Thompson Tucker Turner Walker Walsh Ward Watson Webb Wells West Wheeler White Wilkins Williams Wilson
Wood Wright Young Abbott Archer Bishop Blake Booth Boyd Bradley Briggs Bryant Carr Chambers Curtis Dean
Draper Elliott Farmer Fields Flynn Frost Garner Hale Hardy Hawkins Hobbs Holt Hopkins Horton Ingram Irwin
Jarvis Keane Kemp Knox Lynch Mann Manning Mercer Moss Nolan Osborne Parsons Pike Pratt Rowe Sharp Slater
Sloan Stark Steele Thorne Vance Wade Warner Weaver Whitaker York
""",
    "key": """
acorn almond anchor antler anvil apron arrow badge banjo barrel basket beacon beaker bellows bicycle blanket
bobbin bonnet bottle bracelet bridle broom bucket buckle button cabin cactus candle canoe canvas carpet carrot
casket chalice chimney cinder clarinet cobweb compass cookie copper cradle crayon crown cushion dagger dial
dolphin domino donkey dragon drum eagle easel ember engine falcon feather ferret fiddle flag flask flute
fossil fountain funnel gadget garnet gazelle goblet gondola gorilla granite guitar hammer harp hatchet helmet
heron hinge hornet husk igloo ink iron jacket jaguar javelin jigsaw jukebox kayak kettle kiwi kite koala
ladder ladle lagoon lemon leopard lever lizard locket lobster magnet mallet mango marble marmot mitten monkey
mortar mosaic muffin mustard napkin nugget oar oboe orchid otter oven paddle pagoda parcel parrot peach
pebble pelican pencil pepper piano pickle pigeon pillow pinecone pistachio pitcher plank plum pocket pony
porcupine pretzel puddle pulley puppet quill quilt rabbit raccoon radish raft rattle raven ribbon rocket
saddle sailboat salmon sandal satchel scarf scepter scroll seashell shovel sickle skillet sled slipper
spindle sponge spoon squirrel statue stool suitcase sundial swan sword tablet tambourine teapot telescope
thimble thistle throne tiger toaster tomato torch tortoise trombone trowel trumpet tulip turnip turtle
umbrella unicorn urn vase velvet violin vulture wagon walnut walrus wand weasel wicket windmill wrench yacht
zebra zipper badger beetle biscuit bramble buffalo camel canary cheetah cherry cobra coconut cricket
crocodile cupcake dandelion dumpling elephant emerald fig flamingo gecko ginger hamster hedgehog jellyfish
kangaroo lily lynx mermaid moose narwhal ostrich panther peacock penguin pumpkin python reindeer rhino
scorpion seal shark snail sparrow spider starfish stork tadpole toucan trout wombat yak
""",
    "value": """
ancient azure bitter brave brisk cheerful clever crimson crisp curious dainty dapper dazzling eager elegant
fearless fierce fluffy fragile frosty gentle giant gleaming glossy golden graceful grumpy hasty hollow humble
icy jolly jovial keen lavish lively lofty loyal lucky lunar mellow merry mighty misty modest murky nimble
noble obscure ornate peaceful plucky polite proud quaint radiant rapid regal rosy royal rugged rustic sacred
scarlet serene shiny silky sleek slender sly snowy solar sparkling spicy splendid steady stormy sturdy subtle
sunny tame tender thrifty tidy tranquil twinkling vivid wary wild windy witty zany zealous zesty
absence accord advice agility ambition amnesty anthem apathy ardor aroma aura autumn ballad banquet bargain
bliss blossom bounty bravery breeze brilliance cadence calamity candor carnival cascade charm chorus clarity
comfort courage crescent delight destiny dignity dream echo eclipse elegance embrace enigma epoch essence
euphoria fable faith fame fantasy fervor festival fiesta fortune freedom frenzy galaxy glory gratitude
harmony haven honor horizon humor illusion impulse infinity insight instinct jubilee justice karma kindness
labyrinth legacy legend liberty lullaby luster madness majesty melody memory mercy miracle mirth mischief
momentum mystery myth nectar nostalgia oasis odyssey omen opera oracle paradox passion patience prism promise
prophecy prosperity quest rapture reason rhythm riddle ritual romance saga serenity shadow solace sonnet
spirit splendor symphony talent tempest theory thunder treasure triumph trust twilight valor vertigo victory
vigor virtue vision vortex whimsy wisdom wonder zenith
""",
    "api": """
acme aero apex astro axon bento blaze bolt byte cargo cipher cirrus cobalt comet core cosmo crest cube dash
delta dyna edge epic flux forge fusion gamma giga glide grid halo helix hub hyper iota jet kilo lumen luma
macro mega micro mono nano neon nexus nova omni onyx orbit pixel pulse quantum radar relay rover sigma sonic
spark spectra sprint stack strata summit synth tango terra titan torque turbo ultra unity vector velo vertex
vista volt warp xeno zen zinc zulu aspen banyan birch blitz cedar chroma citrus coral dune fern flint glacier
grove jade lotus maple mesa nebula oak pine quartz reef ridge sage slate spruce tundra willow atom photon
proton neutron ion laser sonar beam gear rivet piston turbine sprocket drone probe shuttle module kernel
daemon socket packet cable fiber circuit chip alloy argon boron carbon helium krypton lithium nickel radon
silicon xenon zircon
""",
    # ------------------------------------------------------------ shared kinds (not split)
    "room": "kitchen garden bathroom bedroom office hallway attic basement pantry balcony lobby nursery porch "
            "garage closet terrace veranda parlor",
    "item": "apple football milk banana orange pear onion potato cheese bread sandwich notebook wallet camera "
            "phone laptop backpack glove sock towel spatula stapler frisbee baseball racket jar mug tray kite",
    "school": """
Ashford Brookfield Cedarwood Danforth Eastwick Fairhaven Glenmore Hartley Ironwood Kingsley Larkspur Millbrook
Northgate Oakridge Pinecrest Queensbury Ravenwood Silverton Thornbury Upton Valemont Westbrook Ambrose Belmont
Clifton Dunmore Elmstead Foxley Greystone Hollis Kenmore Lindale Marlow Norwood Oxley Prescott Redfield
Stanton Trenton Whitfield
""",
    "major": """
Biology Chemistry Physics Mathematics History Economics Philosophy Psychology Sociology Linguistics Geology
Astronomy Architecture Literature Music Anthropology Engineering Statistics Medicine Law Nursing Finance
Marketing Accounting Journalism Theology Ecology Genetics Botany Zoology Geography Politics Design Drama
""",
    "adjective": """
big small old new red blue green yellow white black brown warm cold dry wet soft hard heavy light long short
round flat sharp dull bright dark loud early late busy empty full clean dirty cheap rich poor young fresh
stale sweet sour salty plain simple strange common usual large little wide deep thick thin tall low high
narrow quiet calm pale rare odd wise bold smooth silent tiny vast gray purple pink silver wooden woolen
cotton paper glass stone dusty muddy sandy rusty shady sunlit hidden broken open closed famous friendly
lonely happy sad angry tired hungry sleepy careful gentle
""",
    "noun": """
man woman child boy girl farmer baker sailor doctor teacher painter driver singer writer dog cat bird horse
cow sheep goat fish tree flower river lake hill mountain road street house door window wall floor roof box
bag cup plate bowl coat hat shoe shirt ring coin rock cloud sun moon star sky sea shore field farm village
town city bridge tower boat ship train car bus truck wheel rope clock lamp picture song story game gift
letter parcel fence gate path stream pond leaf branch seed fruit basket table chair bench shelf desk
cart barrel net rug curtain mirror candle kettle pot pan jug sack drawer ladder tent camp fire smoke wind
rain snow storm dust mud grass
""",
    "verb": """
admired painted cleaned watched followed noticed opened closed visited washed fixed built studied borrowed
counted described explored finished greeted guarded helped hid ignored imagined joined liked loved measured
mended mixed ordered packed pointed polished praised printed pulled pushed raised repaired rolled sketched
sold stacked tested touched traced trusted turned used warmed weighed wrapped wanted answered baked boiled
brushed buried called changed chased checked climbed collected cooked copied crossed decorated delivered
dried earned emptied enjoyed feared filled folded gathered guessed heated hugged judged labeled lifted loaded
locked lowered melted missed needed observed owned parked planted played poured preferred protected rescued
scrubbed served shared signed smelled spotted sorted squeezed stirred stored supported tapped thanked tied
traded trimmed unlocked waved wiped
""",
    "adverb": """
quickly slowly quietly loudly gladly calmly softly boldly gently rarely often never always again today
yesterday suddenly carefully eagerly happily sadly barely nearly easily firmly kindly neatly openly proudly
roughly simply warmly wisely briefly finally clearly closely deeply freely
""",
    "place": """
market station harbor meadow valley orchard bakery library museum theater stadium pier cottage barn mill
chapel tavern plaza square courtyard lighthouse quarry vineyard canyon desert swamp prairie island cliff
beach forest riverbank lakeside hilltop farmhouse warehouse workshop factory clinic campus gallery arcade
avenue boulevard fortress palace castle monastery temple dock wharf park zoo circus inn motel hostel airport
""",
    "apiverb": """
fetch update delete list validate export import archive compute convert schedule cancel verify summarize
translate encrypt compress sync merge rank filter sort search monitor estimate predict render resize publish
register refund approve reject notify track geocode parse format tag count
""",
    "apiadj": "current latest monthly daily total pending archived default primary public private remote local "
              "weekly annual average recent active expired draft",
    "apinoun": """
balance invoice forecast schedule inventory shipment profile session password address payment report summary
transcript playlist itinerary reservation subscription catalog review rating receipt budget order contract
license certificate comment message timeline
""",
    "apiobj": "account customer user vendor device project city flight hotel store patient employee course team "
              "vehicle product server channel document member",
    "param": "limit offset region currency locale timezone page cursor verbose units precision language "
             "start end query fields sort_key retries timeout mode",
}


def _build() -> dict[str, tuple[str, ...]]:
    """Words per kind, each word in the first kind that lists it (kinds stay disjoint)."""
    seen: set[str] = set()
    kinds: dict[str, tuple[str, ...]] = {}
    for kind, raw in _RAW.items():
        words = []
        for w in raw.split():
            if w not in seen:
                seen.add(w)
                words.append(w)
        kinds[kind] = tuple(words)
    return kinds


KINDS: dict[str, tuple[str, ...]] = _build()


def word_split(kind: str, word: str) -> str:
    """The split a word of a split kind belongs to, by a stable hash (never Python's hash())."""
    h = int.from_bytes(hashlib.blake2b(f"{kind}:{word}".encode(), digest_size=8).digest(), "big")
    u = h / 2 ** 64
    if u < SPLIT_FRACTIONS[0]:
        return "train"
    if u < SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]:
        return "val"
    return "test"


@lru_cache(maxsize=None)
def pool(kind: str, split: str | None = None) -> tuple[str, ...]:
    """Words of `kind` usable in `split`; shared kinds ignore the split."""
    if kind not in KINDS:
        raise KeyError(f"unknown word kind {kind!r}; known: {sorted(KINDS)}")
    if split not in (None, "train", "val", "test", "heldout"):
        raise ValueError(f"split must be train, val, test or heldout, got {split!r}")
    words = KINDS[kind]
    if split is None or kind not in SPLIT_KINDS:
        return words
    # heldout = val + test: every word no training example holds (the capacity curve needs 64 keys
    # per context, more than the test split's 62)
    wanted = ("val", "test") if split == "heldout" else (split,)
    return tuple(w for w in words if word_split(kind, w) in wanted)


def sample(rng, kind: str, split: str | None, k: int) -> list[str]:
    """k distinct words of a kind; a clear error when the split's pool is too small."""
    words = pool(kind, split)
    if k > len(words):
        raise ValueError(f"need {k} distinct {kind!r} words but the {split} pool has only {len(words)}")
    return rng.sample(words, k)


def all_words() -> list[str]:
    """Every lexicon word (sorted), for the tokenizer's must_include."""
    return sorted({w for words in KINDS.values() for w in words})
