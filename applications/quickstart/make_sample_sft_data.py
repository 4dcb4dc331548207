"""Generate the small bilingual (English / Simplified Chinese) quickstart SFT corpus.

Every conversation is produced here from hand-written templates and slot
fillers; nothing is copied from books, websites or datasets. Conversations about
the invented Calvessa Islands (卡尔维萨群岛) take their facts from the fact table
`FACTS` of `make_sample_data.py`, so the answers agree with the pretraining
corpus; the everyday conversations (arithmetic, unit conversion, planning a day,
writing a note) are written here too.

Files written to `data/sft/` next to this script (JSON Lines, UTF-8, one object
per line with exactly the keys `messages` and `category`; `messages` is a list
of {"from": "human" | "assistant", "content": ...} that alternates human,
assistant, ... and ends with an assistant reply):

    chat_en.jsonl      multi-turn English conversations (1 to 6 turns)
    chat_zh.jsonl      multi-turn Chinese conversations (1 to 6 turns)
    instruct_en.jsonl  single-turn English instructions (rewrite, summarise,
                       list, translate into Chinese, classify)

Some conversations hold a long reply (600+ characters) after a short first turn,
so that they need truncation at a max length of 256 tokens; first turns are kept
short so that truncation keeps at least one turn instead of dropping the record.

Run it from the repository root:

    python applications/quickstart/make_sample_sft_data.py            # default: --seed 0
    python applications/quickstart/make_sample_sft_data.py --out /tmp/sft

The output is committed to the repository. Generation uses only
`random.Random(seed)` and ordered data, so regenerating with the same seed must
give byte-identical files.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # importing the sibling generator must not leave __pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_sample_data as base  # noqa: E402

FACTS = base.FACTS
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "sft"
FORBIDDEN = ("<s>", "</s>", "<unk>", "<|", "[INST]")

# ---------------------------------------------------------------------------
# Phrase table: key -> {"en": [templates], "zh": [templates]}; `say` picks one.
# ---------------------------------------------------------------------------
P = {
    # islands
    "isl_q": {"en": ["Tell me about {island}.", "What can you tell me about {island}?", "What is {island} like?"],
              "zh": ["给我介绍一下{island}吧。", "{island}是个什么样的地方？", "能说说{island}吗？"]},
    "isl_a": {"en": ["{Island} lies {position}. {inote} The landscape is one of {landscape}."],
              "zh": ["{island}{position}。{inote}岛上的地貌以{landscape}为主。"]},
    "isl_high_q": {"en": ["What is the highest point there?", "Which mountain is the highest on it?"],
                   "zh": ["那里的最高点是哪里？", "岛上最高的山是哪座？"]},
    "isl_high_a": {"en": ["The highest point of {island} is {mountain}."], "zh": ["{island}的最高点是{mountain}。"]},
    "tall_q": {"en": ["And how tall is it?", "How high is it?"], "zh": ["它有多高？", "那它有多高呢？"]},
    "tall_a": {"en": ["{Mountain} rises to {height} metres. {mnote}"], "zh": ["{mountain}海拔{height}米。{mnote}"]},
    "isl_towns_q": {"en": ["Which towns are on the island?", "Are there any towns there?"],
                    "zh": ["岛上有哪些城镇？", "那里有城镇吗？"]},
    "towns_many": {"en": ["The towns on {island} are {towns}."], "zh": ["{island}上的城镇有{towns}。"]},
    "towns_one": {"en": ["The only settlement on {island} is {towns}."], "zh": ["{island}上唯一的居民点是{towns}。"]},
    "towns_none": {"en": ["There is no town on {island}. {inote}"], "zh": ["{island}上没有城镇。{inote}"]},
    "isl_pop_q": {"en": ["How many people live there?", "And what is its population?"],
                  "zh": ["岛上住着多少人？", "那它的人口有多少？"]},
    "isl_pop_a": {"en": ["About {pop} people live on {island}. That is roughly {pct}% of the {wpop} inhabitants "
                         "of the whole archipelago."],
                  "zh": ["{island}约有{pop}人，大约占整个群岛{wpop}名居民的{pct}%。"]},
    "isl_vs_q": {"en": ["Is it bigger than {other}?", "Is it larger than {other}?"], "zh": ["它比{other}大吗？"]},
    "isl_vs_yes": {"en": ["Yes. {Island} covers {a} square kilometres and {other} only {b}, so it is {d} square "
                          "kilometres larger."],
                   "zh": ["是的。{island}面积{a}平方千米，{other}只有{b}平方千米，大了{d}平方千米。"]},
    "isl_vs_no": {"en": ["No. {Other} is larger: it covers {b} square kilometres, against {a} for {island}, "
                         "a difference of {d} square kilometres."],
                  "zh": ["不是。{other}更大：它的面积是{b}平方千米，而{island}只有{a}平方千米，相差{d}平方千米。"]},
    # mountains
    "mt_q": {"en": ["What is the highest point of {island}?", "Which is the tallest mountain on {island}?"],
             "zh": ["{island}的最高点是哪里？", "{island}上最高的山是哪座？"]},
    "mt_obren_q": {"en": ["Is that the highest mountain in the whole archipelago?"],
                   "zh": ["它是整个群岛最高的山吗？"]},
    "mt_obren_a": {"en": ["Yes. At {height} metres, {mountain} is the highest point of {world}."],
                   "zh": ["是的。{mountain}海拔{height}米，是{world}的最高点。"]},
    "mt_cmp_q": {"en": ["How much lower is it than Mount Obren?"], "zh": ["它比奥布伦山矮多少？"]},
    "mt_cmp_a": {"en": ["It is {d} metres lower: Mount Obren is {h0} metres high and {mountain} {height} metres."],
                 "zh": ["它比奥布伦山矮{d}米：奥布伦山海拔{h0}米，{mountain}海拔{height}米。"]},
    "mt_riv_q": {"en": ["Does any river rise on it?", "Do any rivers start there?"],
                 "zh": ["有河流发源于这座山吗？", "有没有河从那里发源？"]},
    "mt_riv_yes": {"en": ["Yes: {rivers} {verb} on the slopes of {mountain}."], "zh": ["有，{rivers}发源于{mountain}。"]},
    "mt_riv_no": {"en": ["No. None of the rivers of the islands has its source on {mountain}."],
                  "zh": ["没有，群岛上没有哪条河发源于{mountain}。"]},
    # towns
    "town_q": {"en": ["Where is {town}?", "On which island is {town}?", "I keep hearing about {town}. Where is it?"],
               "zh": ["{town}在哪里？", "{town}在哪座岛上？", "我常听人说起{town}，它在哪儿？"]},
    "town_a": {"en": ["{Town} is a town on {island}, which lies {position}."],
               "zh": ["{town}是{island}上的一个城镇，{island}{position}。"]},
    "known_q": {"en": ["What is it known for?", "Why do people go there?"], "zh": ["它以什么出名？", "人们为什么去那里？"]},
    "known_a": {"en": ["It is known for {known}."], "zh": ["它最有名的是{known}。"]},
    "founded_q": {"en": ["When was it founded?", "How old is it?"], "zh": ["它是哪一年建立的？", "它有多古老？"]},
    "founded_a": {"en": ["{Town} was founded in {year}, {gap} years after the capital, Port Aurel."],
                  "zh": ["{town}建于{year}年，比首府奥雷尔港晚{gap}年。"]},
    "tpop_q": {"en": ["How many people live there?", "Is it a big place?"], "zh": ["那里住着多少人？", "那地方大吗？"]},
    "tpop_a": {"en": ["About {pop} people live in {town}."], "zh": ["{town}约有{pop}人。"]},
    "route_q": {"en": ["How do I get there from Port Aurel?", "Can I get there by ferry from Port Aurel?"],
                "zh": ["从奥雷尔港怎么去那里？", "从奥雷尔港能坐渡轮去吗？"]},
    "route_direct": {"en": ["Take the ferry from Port Aurel to {town}: it covers {km} kilometres in {min} minutes."],
                     "zh": ["从奥雷尔港坐渡轮可以直达{town}，航程{km}千米，需要{min}分钟。"]},
    "route_road": {"en": ["You do not need a ferry: {town} is on Tarn Major, like Port Aurel, so you can go by road."],
                   "zh": ["不用坐渡轮：{town}和奥雷尔港都在大塔恩岛上，走陆路就能到。"]},
    "route_hub": {"en": ["There is no direct boat. Take the ferry to {hub} ({min} minutes), then continue by road "
                         "to {town}, which is also on {island}."],
                  "zh": ["没有直达的船。先坐渡轮到{hub}（{min}分钟），再走陆路去同在{island}上的{town}。"]},
    "route_port": {"en": ["Go by road to {hub}, which is also on Tarn Major, and take the ferry to {town} from "
                          "there; the crossing is {km} kilometres and takes {min} minutes."],
                   "zh": ["先走陆路到同在大塔恩岛上的{hub}，再从那里坐渡轮去{town}，航程{km}千米，需要{min}分钟。"]},
    # rivers
    "riv_q": {"en": ["How long is {river}?", "What is the length of {river}?"], "zh": ["{river}有多长？"]},
    "riv_a": {"en": ["{River} is {length} kilometres long."], "zh": ["{river}全长{length}千米。"]},
    "riv_src_q": {"en": ["Where does it rise?", "Where is its source?"], "zh": ["它发源于哪里？", "它的源头在哪儿？"]},
    "riv_src_a": {"en": ["It rises on {source}, on {island}."], "zh": ["它发源于{island}的{source}。"]},
    "riv_end_q": {"en": ["And where does it end?", "And where does it flow to?"], "zh": ["那它流到哪里？", "它最后流向哪里？"]},
    "riv_end_a": {"en": ["It {mouth}."], "zh": ["它{mouth}。"]},
    "riv_note_q": {"en": ["Is there anything special about it?"], "zh": ["这条河有什么特别之处吗？"]},
    "riv_vs_q": {"en": ["Is it longer than {other}?"], "zh": ["它比{other}长吗？"]},
    "riv_vs_yes": {"en": ["Yes, by {d} kilometres: {other} is only {b} kilometres long."],
                   "zh": ["是的，长{d}千米：{other}全长只有{b}千米。"]},
    "riv_vs_no": {"en": ["No. {Other} is {b} kilometres long, {d} kilometres more than {river}."],
                  "zh": ["不是。{other}全长{b}千米，比{river}长{d}千米。"]},
    # animals and plants
    "ani_q": {"en": ["What is a {animal}?", "Have you heard of the {animal}? What is it?"],
              "zh": ["{animal}是什么动物？", "你听说过{animal}吗？它是什么？"]},
    "ani_a": {"en": ["The {animal} is {kind} found only in {range}."], "zh": ["{animal}是{kind}，只分布在{range}。"]},
    "diet_q": {"en": ["What does it eat?"], "zh": ["它吃什么？"]},
    "diet_a": {"en": ["It feeds on {diet}."], "zh": ["它以{diet}为食。"]},
    "size_q": {"en": ["How big is it?", "How big does it get?"], "zh": ["它有多大？", "它个头有多大？"]},
    "size_a": {"en": ["An adult {size}."], "zh": ["成年个体{size}。"]},
    "count_q": {"en": ["How many of them are there?"], "zh": ["野外大概有多少？"]},
    "count_a": {"en": ["Naturalists estimate that about {est} {unit} live in the wild."],
                "zh": ["据博物学者估计，野外约有{est}{unit}。"]},
    "count_none": {"en": ["Nobody knows exactly: there is no published estimate of their numbers."],
                   "zh": ["没有人确切知道，目前还没有关于它数量的估计。"]},
    "trait_q": {"en": ["Is there anything unusual about it?", "Tell me one interesting thing about it."],
                "zh": ["它有什么特别的地方吗？", "说一件关于它的有趣的事吧。"]},
    "pl_q": {"en": ["What is {plant}?", "I read about {plant}. What is it?"], "zh": ["{plant}是什么植物？", "我在书上看到过{plant}，它是什么？"]},
    "pl_a": {"en": ["{Plant} is {kind} that grows {prep} {range}."], "zh": ["{plant}是{kind}，生长在{range}。"]},
    "pl_size_q": {"en": ["How tall does it grow?"], "zh": ["它能长多高？"]},
    "pl_size_a": {"en": ["It {size}."], "zh": ["它{size}。"]},
    "pl_use_q": {"en": ["What is it used for?", "Is it useful for anything?"], "zh": ["它有什么用？", "它有什么用处吗？"]},
    "pl_trait_q": {"en": ["Anything else I should know about it?"], "zh": ["关于它还有什么值得一提的？"]},
    # ferries
    "fer_q": {"en": ["How long does the ferry from {a} to {b} take?",
                     "I need to get from {a} to {b} by boat. How long is the trip?"],
              "zh": ["从{a}坐渡轮到{b}要多久？", "我要从{a}坐船去{b}，路上要多长时间？"]},
    "fer_a": {"en": ["The ferry takes {min} minutes to cover the {km} kilometres."],
              "zh": ["渡轮航程{km}千米，需要{min}分钟。"]},
    "fer_dep_q": {"en": ["If I take the {dep} boat, when do I arrive?"], "zh": ["如果我坐{dep}的船，几点能到？"]},
    "fer_dep_a": {"en": ["Leaving at {dep} and sailing for {min} minutes, you arrive in {b} at {arr}."],
                  "zh": ["{dep}出发，航行{min}分钟，{arr}到达{b}。"]},
    "fer_back_q": {"en": ["And if I come straight back on a boat that leaves {wait} minutes after I arrive, "
                          "when will I be back in {a}?"],
                   "zh": ["如果我到了以后等{wait}分钟再坐船返回，几点能回到{a}？"]},
    "fer_back_a": {"en": ["The return boat leaves at {dep2} and gets you back to {a} at {arr2}."],
                   "zh": ["返程的船{dep2}开出，{arr2}回到{a}。"]},
    "fer_speed_q": {"en": ["What is the average speed of that ferry?"], "zh": ["这班渡轮的平均速度是多少？"]},
    "fer_speed_a": {"en": ["{km} kilometres in {min} minutes is about {speed} kilometres per hour."],
                    "zh": ["{min}分钟走{km}千米，平均速度约为每小时{speed}千米。"]},
    # festival
    "fest_q": {"en": ["When is the Starbell Festival?", "When can I see the Starbell Festival?",
                      "I'd love to go to the Starbell Festival. When does it take place?",
                      "What are the dates of the Starbell Festival?"],
               "zh": ["星铃节是什么时候？", "什么时候能赶上星铃节？", "我很想去看星铃节，它在哪几天举行？", "星铃节的日期是哪几天？"]},
    "fest_a": {"en": ["It is held every year from {dates} in {town}."], "zh": ["星铃节每年{dates}在{town}举行。"]},
    "fest_name_q": {"en": ["Why is it called that?", "Where does the name come from?"],
                    "zh": ["为什么叫这个名字？", "这个名字是怎么来的？"]},
    "fest_name_a": {"en": ["It is named after the starbell, {kind} and the national flower of the islands. {Trait}, "
                           "so the festival falls while it is in flower."],
                    "zh": ["它以星铃花命名。星铃花是{kind}，也是群岛的国花；{trait}，节日正赶上它开花的时候。"]},
    "fest_night_q": {"en": ["What happens on the first night?"], "zh": ["第一天晚上有什么活动？"]},
    "fest_night_a": {"en": ["About {lanterns} paper lanterns are floated in the harbour."],
                     "zh": ["人们会把约{lanterns}盏纸灯笼放到港湾的水面上。"]},
    "fest_end_q": {"en": ["And how does it end?"], "zh": ["那节日怎么结束？"]},
    "fest_first_q": {"en": ["When was it first held?"], "zh": ["第一届是什么时候举办的？"]},
    "fest_first_a": {"en": ["The first Starbell Festival was held in {first}. {detail}"],
                     "zh": ["第一届星铃节于{first}年举办。{detail}"]},
    "fest_vis_q": {"en": ["Is it crowded?", "How many people come?"], "zh": ["人多吗？", "有多少人去？"]},
    "fest_vis_a": {"en": ["It is busy: around {visitors} visitors come every year."],
                   "zh": ["很热闹，每年约有{visitors}名游客前来。"]},
    # history
    "his_q": {"en": ["What happened in the Calvessa Islands in {year}?", "Did anything important happen in {year}?"],
              "zh": ["{year}年卡尔维萨群岛发生了什么？", "{year}年有什么大事吗？"]},
    "his_a": {"en": ["In {year}, {event}."], "zh": ["{year}年，{event}。"]},
    "his_more_q": {"en": ["Tell me more about that.", "Can you say a little more?"], "zh": ["能再多说一点吗？", "详细讲讲吧。"]},
    "his_gap_q": {"en": ["How many years after the first settlers arrived was that?"],
                  "zh": ["那是第一批移民到来之后多少年的事？"]},
    "his_gap_a": {"en": ["The first settlers landed in {y0}, so it was {gap} years later."],
                  "zh": ["第一批移民是{y0}年登岛的，所以那是{gap}年之后的事。"]},
    "his_next_q": {"en": ["What happened next?", "And what came after that?"], "zh": ["之后又发生了什么？", "再后来呢？"]},
    "his_next_a": {"en": ["The next big event came in {year}, when {event}."], "zh": ["下一件大事发生在{year}年：{event}。"]},
    # money
    "cur_q": {"en": ["What money do they use in the Calvessa Islands?", "What is the currency of the Calvessa Islands?",
                     "Which currency should I bring to the Calvessa Islands?"],
              "zh": ["卡尔维萨群岛用什么货币？", "卡尔维萨群岛的货币是什么？", "去卡尔维萨群岛要带什么钱？"]},
    "cur_a": {"en": ["They pay with {currency}, which is divided into {per} {sub}."],
              "zh": ["那里使用{currency}，1马克等于{per}{sub}。"]},
    "cur_conv_q": {"en": ["How many pennets are there in {marks} marks?"], "zh": ["{marks}马克是多少便奈？"]},
    "cur_conv_a": {"en": ["{marks} marks are {pennets} pennets."], "zh": ["{marks}马克等于{pennets}便奈。"]},
    "cur_buy_q": {"en": ["A cup of amber tea costs {price} pennets. How much do {n} cups cost?"],
                  "zh": ["一杯琥珀茶{price}便奈，{n}杯要多少钱？"]},
    "cur_buy_a": {"en": ["{n} cups cost {total} pennets, that is {tmarks} marks."],
                  "zh": ["{n}杯一共{total}便奈，也就是{tmarks}马克。"]},
    "cur_change_q": {"en": ["And how much change do I get from a {note}-mark note?"],
                     "zh": ["如果我付一张{note}马克的纸币，应该找回多少？"]},
    "cur_change_a": {"en": ["You get {change} pennets back, which is {cmarks} marks."],
                     "zh": ["应该找回{change}便奈，也就是{cmarks}马克。"]},
    # climate
    "cl_q": {"en": ["What is the weather like in the Calvessa Islands?", "What kind of climate do the islands have?",
                    "Is it cold in the Calvessa Islands?", "Does it rain a lot in the Calvessa Islands?"],
             "zh": ["卡尔维萨群岛的气候怎么样？", "那些岛上天气如何？", "卡尔维萨群岛冷不冷？", "卡尔维萨群岛雨水多吗？"]},
    "cl_july_q": {"en": ["So how warm is it in July?"], "zh": ["那七月有多暖和？"]},
    "cl_july_a": {"en": ["The average temperature in July is {july} degrees Celsius."], "zh": ["七月平均气温是{july}摄氏度。"]},
    "cl_f_q": {"en": ["What is that in Fahrenheit?"], "zh": ["换算成华氏度是多少？"]},
    "cl_f_a": {"en": ["{july} degrees Celsius is {f} degrees Fahrenheit ({july} × 9/5 + 32)."],
               "zh": ["{july}摄氏度等于{f}华氏度（{july}×9/5+32）。"]},
    "cl_jan_q": {"en": ["And in January?"], "zh": ["那一月呢？"]},
    "cl_jan_a": {"en": ["In January the average is {jan} degrees Celsius, which is {fj} degrees Fahrenheit."],
                 "zh": ["一月平均气温{jan}摄氏度，合{fj}华氏度。"]},
    "cl_pack_q": {"en": ["I'm going in {wet}. What should I pack?"], "zh": ["我打算{wet}去，应该带些什么？"]},
    "cl_pack_a": {"en": ["{Wet} is the wettest month of the year in the islands, so pack a waterproof jacket, shoes "
                         "that can cope with wet paths and a warm layer for the evenings."],
                  "zh": ["{wet}是群岛一年中雨水最多的月份，所以要带一件防水外套、一双不怕湿的鞋，再带件晚上穿的保暖衣服。"]},
    # comparing islands
    "cmp_q": {"en": ["Which is bigger, {a} or {b}?"], "zh": ["{a}和{b}哪个大？"]},
    "cmp_a": {"en": ["{Big} is bigger: it covers {x} square kilometres, while {small} covers {y}."],
              "zh": ["{big}更大：面积{x}平方千米，而{small}只有{y}平方千米。"]},
    "cmp_by_q": {"en": ["By how much?"], "zh": ["大多少？"]},
    "cmp_by_a": {"en": ["By {d} square kilometres. {Big} is about {ratio} times the size of {small}."],
                 "zh": ["大{d}平方千米，{big}的面积约是{small}的{ratio}倍。"]},
    "cmp_pop_q": {"en": ["And which one has more people?"], "zh": ["那哪座岛人口更多？"]},
    "cmp_pop_a": {"en": ["{More} does, with about {p1} inhabitants against about {p2} on {less}."],
                  "zh": ["{more}人口更多，约{p1}人；{less}约{p2}人。"]},
    "cmp_den_q": {"en": ["Which one is more crowded, then?", "What about population density?"],
                  "zh": ["那哪座岛人口更密集？", "人口密度呢？"]},
    "cmp_den_a": {"en": ["{A} has about {da} people per square kilometre and {b} about {db}, so {denser} is more "
                         "densely populated."],
                  "zh": ["{a}每平方千米约{da}人，{b}约{db}人，所以{denser}人口更密集。"]},
    # language
    "lang_q": {"en": ["What language do people speak in the Calvessa Islands?",
                      "Which language will I hear in the Calvessa Islands?"],
               "zh": ["卡尔维萨群岛的人说什么语言？", "在卡尔维萨群岛能听到什么语言？"]},
    "lang_a": {"en": ["They speak {language}, which grew out of the speech of the first settlers from {mainland}."],
               "zh": ["他们说{language}，这种语言是从最早由{mainland}来的移民的口语发展而来的。"]},
    "hello_q": {"en": ["How do I say hello?", "What is the usual greeting?"], "zh": ["“你好”怎么说？", "平时怎么打招呼？"]},
    "hello_a": {"en": ["The everyday greeting is {greeting}."], "zh": ["日常的问候语是{greeting}。"]},
    "bye_q": {"en": ["And goodbye?", "And how do I say goodbye?"], "zh": ["那“再见”呢？", "告别的时候说什么？"]},
    "bye_a": {"en": ["The same word: {greeting} is used both for hello and for goodbye."],
              "zh": ["也是这个词：{greeting}见面和告别时都可以说。"]},
    "settle_q": {"en": ["Where did those first settlers land?"], "zh": ["那些最早的移民是在哪里登岛的？"]},
}


def say(rng: random.Random, lang: str, key: str, **slots) -> str:
    return rng.choice(P[key][lang]).format(**slots)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
def nv(slot: str, text: str) -> dict:
    """A slot and its sentence-initial form: {"town": "the Crown", "Town": "The Crown"}."""
    return {slot: text, slot.capitalize(): base.cap(text)}


def num(n: int, lang: str) -> str:
    return base.num(n, lang)


def join(items: list[str], lang: str) -> str:
    return base.en_list(items) if lang == "en" else base.zh_list(items)


def fmt1(x: float) -> str:
    """One decimal, without a trailing `.0`."""
    text = f"{x:.1f}"
    return text[:-2] if text.endswith(".0") else text


def marks(pennets: int) -> str:
    return f"{pennets // 100}.{pennets % 100:02d}" if pennets % 100 else str(pennets // 100)


def hm(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def dur(minutes: int, lang: str) -> str:
    h, m = divmod(minutes, 60)
    if lang == "zh":
        return (f"{h}小时" if h else "") + (f"{m}分钟" if m else "")
    parts = [f"{h} hour{'s' * (h != 1)}"] * bool(h) + [f"{m} minute{'s' * (m != 1)}"] * bool(m)
    return " and ".join(parts)


def fahrenheit(celsius: float) -> float:
    return celsius * 9 / 5 + 32


def ferry(a: str, b: str) -> dict | None:
    for f in FACTS["ferries"]:
        if {f["from"], f["to"]} == {a, b}:
            return f
    return None


def island_of(town: str) -> str:
    return FACTS["towns"][town]["island"]


# ---------------------------------------------------------------------------
# Conversations about the islands: each builder returns the full chain of
# (human, assistant) turns; later turns refer back to earlier ones.
# ---------------------------------------------------------------------------
def island_slots(key: str, lang: str) -> dict:
    i = FACTS["islands"][key]
    m = FACTS["mountains"][i["highest"]]
    return {**nv("island", i["name"][lang]), **nv("mountain", m["name"][lang]), "height": num(m["height_m"], lang),
            "mnote": m["note"][lang], "inote": i["note"][lang], "position": i["position"][lang],
            "landscape": i["landscape"][lang], "pop": num(i["population"], lang),
            "wpop": num(FACTS["world"]["population"], lang),
            "pct": fmt1(100 * i["population"] / FACTS["world"]["population"])}


def towns_answer(rng: random.Random, key: str, lang: str, s: dict) -> str:
    towns = [base.nm("towns", t, lang) for t in base.of_island("towns", key)]
    which = "towns_many" if len(towns) > 1 else "towns_one" if towns else "towns_none"
    return say(rng, lang, which, **s, towns=join(towns, lang))


def island_vs(rng: random.Random, key: str, other: str, lang: str, s: dict) -> tuple[str, str]:
    a, b = FACTS["islands"][key]["area_km2"], FACTS["islands"][other]["area_km2"]
    o = {**s, **nv("other", base.nm("islands", other, lang)), "a": num(a, lang), "b": num(b, lang),
         "d": num(abs(a - b), lang)}
    return say(rng, lang, "isl_vs_q", **o), say(rng, lang, "isl_vs_yes" if a > b else "isl_vs_no", **o)


def conv_island(rng: random.Random, lang: str) -> list:
    key = rng.choice(list(FACTS["islands"]))
    s = island_slots(key, lang)
    other = rng.choice([k for k in FACTS["islands"] if k != key])
    return [(say(rng, lang, "isl_q", **s), say(rng, lang, "isl_a", **s)),
            (say(rng, lang, "isl_high_q", **s), say(rng, lang, "isl_high_a", **s)),
            (say(rng, lang, "tall_q", **s), say(rng, lang, "tall_a", **s)),
            (say(rng, lang, "isl_towns_q", **s), towns_answer(rng, key, lang, s)),
            (say(rng, lang, "isl_pop_q", **s), say(rng, lang, "isl_pop_a", **s)),
            island_vs(rng, key, other, lang, s)]


def mountain_rivers(rng: random.Random, key: str, lang: str, s: dict) -> str:
    rivers = [r["name"][lang] for r in FACTS["rivers"].values() if r["source"] == key]
    if not rivers:
        return say(rng, lang, "mt_riv_no", **s)
    verb = "rises" if len(rivers) == 1 else "both rise"
    return say(rng, lang, "mt_riv_yes", **s, rivers=base.cap(join(rivers, lang)), verb=verb)


def conv_mountain(rng: random.Random, lang: str) -> list:
    isl = rng.choice(list(FACTS["islands"]))
    key = FACTS["islands"][isl]["highest"]
    s = {**island_slots(isl, lang), "world": base.WORLD_EN if lang == "en" else base.WORLD_ZH}
    h0, h = FACTS["mountains"]["mount_obren"]["height_m"], FACTS["mountains"][key]["height_m"]
    third = ((say(rng, lang, "mt_obren_q"), say(rng, lang, "mt_obren_a", **s)) if key == "mount_obren" else
             (say(rng, lang, "mt_cmp_q"), say(rng, lang, "mt_cmp_a", **s, d=num(h0 - h, lang), h0=num(h0, lang))))
    return [(say(rng, lang, "mt_q", **s), say(rng, lang, "isl_high_a", **s)),
            (say(rng, lang, "tall_q", **s), say(rng, lang, "tall_a", **s)),
            third,
            (say(rng, lang, "mt_riv_q", **s), mountain_rivers(rng, key, lang, s))]


def route_answer(rng: random.Random, key: str, lang: str) -> str:
    s = {"town": base.nm("towns", key, lang), "island": base.nm("islands", island_of(key), lang)}
    direct = ferry("port_aurel", key)
    if direct:
        return say(rng, lang, "route_direct", **s, km=direct["km"], min=direct["minutes"])
    if island_of(key) == "tarn_major":
        return say(rng, lang, "route_road", **s)
    for f in FACTS["ferries"]:
        if f["from"] == "port_aurel" and island_of(f["to"]) == island_of(key):
            return say(rng, lang, "route_hub", **s, hub=base.nm("towns", f["to"], lang), min=f["minutes"])
    for f in FACTS["ferries"]:
        if f["to"] == key and island_of(f["from"]) == "tarn_major":
            return say(rng, lang, "route_port", **s, hub=base.nm("towns", f["from"], lang), km=f["km"],
                       min=f["minutes"])
    raise ValueError(f"no route from Port Aurel to {key}")


def conv_town(rng: random.Random, lang: str) -> list:
    key = rng.choice([k for k in FACTS["towns"] if k != "port_aurel"])
    t = FACTS["towns"][key]
    isl = FACTS["islands"][t["island"]]
    s = {**nv("town", t["name"][lang]), "island": isl["name"][lang], "position": isl["position"][lang],
         "known": t["known_for"][lang], "year": t["founded"], "pop": num(t["population"], lang),
         "gap": t["founded"] - FACTS["towns"]["port_aurel"]["founded"]}
    return [(say(rng, lang, "town_q", **s), say(rng, lang, "town_a", **s)),
            (say(rng, lang, "known_q"), say(rng, lang, "known_a", **s)),
            (say(rng, lang, "founded_q"), say(rng, lang, "founded_a", **s)),
            (say(rng, lang, "tpop_q"), say(rng, lang, "tpop_a", **s)),
            (say(rng, lang, "route_q"), route_answer(rng, key, lang))]


def conv_river(rng: random.Random, lang: str) -> list:
    key, other = rng.sample(list(FACTS["rivers"]), 2)
    r, o = FACTS["rivers"][key], FACTS["rivers"][other]
    a, b = r["length_km"], o["length_km"]
    s = {**nv("river", r["name"][lang]), **nv("other", o["name"][lang]), "length": a, "b": b, "d": abs(a - b),
         "source": base.nm("mountains", r["source"], lang), "island": base.nm("islands", r["island"], lang),
         "mouth": r["mouth"][lang]}
    return [(say(rng, lang, "riv_q", **s), say(rng, lang, "riv_a", **s)),
            (say(rng, lang, "riv_src_q"), say(rng, lang, "riv_src_a", **s)),
            (say(rng, lang, "riv_end_q"), say(rng, lang, "riv_end_a", **s)),
            (say(rng, lang, "riv_note_q"), r["note"][lang]),
            (say(rng, lang, "riv_vs_q", **s), say(rng, lang, "riv_vs_yes" if a > b else "riv_vs_no", **s))]


def trait_sentence(text: str, lang: str) -> str:
    return base.cap(text) + "." if lang == "en" else text + "。"


def conv_animal(rng: random.Random, lang: str) -> list:
    a = FACTS["animals"][rng.choice(list(FACTS["animals"]))]
    s = {"animal": a["name"][lang], "kind": a["kind"][lang], "range": a["range"][lang], "diet": a["diet"][lang],
         "size": a["size"][lang], "unit": a["unit"][lang], "est": num(a["estimate"] or 0, lang)}
    count = say(rng, lang, "count_a" if a["estimate"] else "count_none", **s)
    return [(say(rng, lang, "ani_q", **s), say(rng, lang, "ani_a", **s)),
            (say(rng, lang, "diet_q"), say(rng, lang, "diet_a", **s)),
            (say(rng, lang, "size_q"), say(rng, lang, "size_a", **s)),
            (say(rng, lang, "count_q"), count),
            (say(rng, lang, "trait_q"), trait_sentence(a["trait"][lang], lang))]


def conv_plant(rng: random.Random, lang: str) -> list:
    p = FACTS["plants"][rng.choice(list(FACTS["plants"]))]
    s = {**nv("plant", p["name"][lang]), "kind": p["kind"][lang], "range": p["range"][lang],
         "size": p["size"][lang], "prep": "on" if p["range"]["en"].startswith(("the coasts", "the slopes",
                                                                                "the terraces", "the ground")) else "in"}
    return [(say(rng, lang, "pl_q", **s), say(rng, lang, "pl_a", **s)),
            (say(rng, lang, "pl_size_q"), say(rng, lang, "pl_size_a", **s)),
            (say(rng, lang, "pl_use_q"), trait_sentence(p["use"][lang], lang)),
            (say(rng, lang, "pl_trait_q"), trait_sentence(p["trait"][lang], lang))]


def conv_ferry(rng: random.Random, lang: str) -> list:
    f = rng.choice(FACTS["ferries"])
    a, b = rng.sample([f["from"], f["to"]], 2)
    dep, wait = rng.randrange(7 * 60, 15 * 60, 5), rng.randrange(20, 95, 5)
    arr = dep + f["minutes"]
    s = {"a": base.nm("towns", a, lang), "b": base.nm("towns", b, lang), "km": f["km"], "min": f["minutes"],
         "dep": hm(dep), "arr": hm(arr), "wait": wait, "dep2": hm(arr + wait), "arr2": hm(arr + wait + f["minutes"]),
         "speed": fmt1(f["km"] * 60 / f["minutes"])}
    return [(say(rng, lang, "fer_q", **s), say(rng, lang, "fer_a", **s)),
            (say(rng, lang, "fer_dep_q", **s), say(rng, lang, "fer_dep_a", **s)),
            (say(rng, lang, "fer_back_q", **s), say(rng, lang, "fer_back_a", **s)),
            (say(rng, lang, "fer_speed_q"), say(rng, lang, "fer_speed_a", **s))]


def history_event(year: int) -> dict:
    return next(e for e in FACTS["history"] if e["year"] == year)


def conv_festival(rng: random.Random, lang: str) -> list:
    f, star = FACTS["festival"], FACTS["plants"]["starbell"]
    s = {"dates": f["dates"][lang], "town": base.nm("towns", f["town"], lang), "kind": star["kind"][lang],
         **nv("trait", star["trait"][lang]), "lanterns": num(f["lanterns"], lang), "first": f["first_year"],
         "detail": history_event(f["first_year"])["detail"][lang], "visitors": num(f["visitors"], lang)}
    return [(say(rng, lang, "fest_q"), say(rng, lang, "fest_a", **s)),
            (say(rng, lang, "fest_name_q"), say(rng, lang, "fest_name_a", **s)),
            (say(rng, lang, "fest_night_q"), say(rng, lang, "fest_night_a", **s)),
            (say(rng, lang, "fest_end_q"), base.ENC[lang]["race"]()),
            (say(rng, lang, "fest_first_q"), say(rng, lang, "fest_first_a", **s)),
            (say(rng, lang, "fest_vis_q"), say(rng, lang, "fest_vis_a", **s))]


def conv_history(rng: random.Random, lang: str) -> list:
    events = FACTS["history"]
    i = rng.randrange(1, len(events) - 1)
    e, nxt, y0 = events[i], events[i + 1], events[0]["year"]
    return [(say(rng, lang, "his_q", year=e["year"]), say(rng, lang, "his_a", year=e["year"], event=e[lang])),
            (say(rng, lang, "his_more_q"), e["detail"][lang]),
            (say(rng, lang, "his_gap_q"), say(rng, lang, "his_gap_a", y0=y0, gap=e["year"] - y0)),
            (say(rng, lang, "his_next_q"), say(rng, lang, "his_next_a", year=nxt["year"], event=nxt[lang]))]


def conv_money(rng: random.Random, lang: str) -> list:
    w = FACTS["world"]
    per, pennets = w["subunits_per_mark"], rng.randrange(150, 2500, 25)
    price, n = rng.randrange(120, 400, 10), rng.randint(2, 6)
    note = next(v for v in (5, 10, 20, 50) if v * per > price * n)
    s = {"currency": w["currency"][lang], "per": per, "sub": w["currency_subunit"][lang], "marks": marks(pennets),
         "pennets": num(pennets, lang), "price": price, "n": n, "total": num(price * n, lang),
         "tmarks": marks(price * n), "note": note, "change": num(note * per - price * n, lang),
         "cmarks": marks(note * per - price * n)}
    return [(say(rng, lang, "cur_q"), say(rng, lang, "cur_a", **s)),
            (say(rng, lang, "cur_conv_q", **s), say(rng, lang, "cur_conv_a", **s)),
            (say(rng, lang, "cur_buy_q", **s), say(rng, lang, "cur_buy_a", **s)),
            (say(rng, lang, "cur_change_q", **s), say(rng, lang, "cur_change_a", **s))]


def conv_climate(rng: random.Random, lang: str) -> list:
    c = FACTS["climate"]
    s = {"july": c["july_c"], "f": fmt1(fahrenheit(c["july_c"])), "jan": c["january_c"],
         "fj": fmt1(fahrenheit(c["january_c"])), **nv("wet", c["wettest_month"][lang])}
    return [(say(rng, lang, "cl_q"), base.ENC[lang]["climate"]()),
            (say(rng, lang, "cl_july_q"), say(rng, lang, "cl_july_a", **s)),
            (say(rng, lang, "cl_f_q"), say(rng, lang, "cl_f_a", **s)),
            (say(rng, lang, "cl_jan_q"), say(rng, lang, "cl_jan_a", **s)),
            (say(rng, lang, "cl_pack_q", **s), say(rng, lang, "cl_pack_a", **s))]


def compare_slots(a: str, b: str, lang: str) -> dict:
    isl = FACTS["islands"]
    big, small = sorted((a, b), key=lambda k: -isl[k]["area_km2"])
    more, less = sorted((a, b), key=lambda k: -isl[k]["population"])
    dens = {k: isl[k]["population"] / isl[k]["area_km2"] for k in (a, b)}
    name = {k: isl[k]["name"][lang] for k in (a, b)}
    return {**nv("a", name[a]), "b": name[b], **nv("big", name[big]), "small": name[small],
            "x": num(isl[big]["area_km2"], lang), "y": num(isl[small]["area_km2"], lang),
            "d": num(isl[big]["area_km2"] - isl[small]["area_km2"], lang),
            "ratio": fmt1(isl[big]["area_km2"] / isl[small]["area_km2"]), **nv("more", name[more]),
            "less": name[less], "p1": num(isl[more]["population"], lang), "p2": num(isl[less]["population"], lang),
            "da": fmt1(dens[a]), "db": fmt1(dens[b]), "denser": name[max((a, b), key=dens.get)]}


def conv_compare(rng: random.Random, lang: str) -> list:
    a, b = rng.sample(list(FACTS["islands"]), 2)
    s = compare_slots(a, b, lang)
    return [(say(rng, lang, "cmp_q", **s), say(rng, lang, "cmp_a", **s)),
            (say(rng, lang, "cmp_by_q"), say(rng, lang, "cmp_by_a", **s)),
            (say(rng, lang, "cmp_pop_q"), say(rng, lang, "cmp_pop_a", **s)),
            (say(rng, lang, "cmp_den_q"), say(rng, lang, "cmp_den_a", **s))]


def conv_language(rng: random.Random, lang: str) -> list:
    w, first = FACTS["world"], FACTS["history"][0]
    s = {"language": w["language"][lang], "mainland": w["mainland"][lang], "greeting": w["greeting"][lang]}
    settle = (f"In {first['year']}, {first['en']}. {first['detail']['en']}" if lang == "en" else
              f"{first['year']}年，{first['zh']}。{first['detail']['zh']}")
    return [(say(rng, lang, "lang_q"), say(rng, lang, "lang_a", **s)),
            (say(rng, lang, "hello_q"), say(rng, lang, "hello_a", **s)),
            (say(rng, lang, "bye_q"), say(rng, lang, "bye_a", **s)),
            (say(rng, lang, "settle_q"), settle)]


# ---------------------------------------------------------------------------
# Conversations with a long reply (600+ characters) after a short first turn
# ---------------------------------------------------------------------------
LONG_P = {
    "where_q": {"en": ["Where are the Calvessa Islands?", "Have you heard of the Calvessa Islands?",
                       "What are the Calvessa Islands?"],
                "zh": ["卡尔维萨群岛在哪里？", "你知道卡尔维萨群岛吗？", "卡尔维萨群岛是什么地方？"]},
    "where_a": {"en": ["They are an archipelago of {n} main islands in {sea}, about {km} kilometres off the coast "
                       "of {mainland}."],
                "zh": ["那是{sea}中的一片群岛，由{n}座主要岛屿组成，距{mainland}海岸约{km}千米。"]},
    "detail_q": {"en": ["Can you give me a detailed overview?", "I'm writing a school report about them. Could you "
                        "give me a thorough introduction?", "Tell me more, in a few paragraphs."],
                 "zh": ["能详细介绍一下吗？", "我在写一份关于那里的报告，能给我一段全面的介绍吗？", "再多讲一些吧，写几段。"]},
    "smallest_q": {"en": ["Which of the islands is the smallest?"], "zh": ["其中哪座岛最小？"]},
    "smallest_a": {"en": ["The smallest is {island}: only {area} square kilometres, with {pop} inhabitants."],
                   "zh": ["最小的是{island}，面积只有{area}平方千米，居民{pop}人。"]},
    "who_q": {"en": ["Who lives there?"], "zh": ["那里住的都是什么人？"]},
    "isl_where_q": {"en": ["Where is {island}?", "Where exactly is {island}?"], "zh": ["{island}在哪里？", "{island}具体在什么位置？"]},
    "isl_where_a": {"en": ["{Island} lies {position}."], "zh": ["{island}{position}。"]},
    "guide_q": {"en": ["I'm spending a week there. Can you write me a short travel guide?",
                       "I'm going there next month. Tell me everything I should know."],
                "zh": ["我要在那里待一个星期，能给我写一份简短的旅行指南吗？", "我下个月要去那里，把该知道的都告诉我吧。"]},
    "oldest_q": {"en": ["Which of those towns is the oldest?"], "zh": ["这些城镇里哪个最古老？"]},
    "oldest_a": {"en": ["{Town} is the oldest; it was founded in {year}."], "zh": ["{town}最古老，建于{year}年。"]},
    "biggest_q": {"en": ["And which is the biggest?"], "zh": ["那哪个最大？"]},
    "biggest_a": {"en": ["{Town} is the biggest, with about {pop} people."], "zh": ["{town}最大，约有{pop}人。"]},
    "trip_q": {"en": ["I have {days} days in the Calvessa Islands, starting in Port Aurel. Can you plan my trip?",
                      "Could you put together a {days}-day itinerary for me, beginning in Port Aurel?"],
               "zh": ["我在卡尔维萨群岛有{days}天时间，从奥雷尔港出发，能帮我安排一下行程吗？",
                      "能帮我设计一个从奥雷尔港出发的{days}日行程吗？"]},
    "ferry_total_q": {"en": ["How much time will I spend on the ferries altogether?"], "zh": ["我一共要在渡轮上花多少时间？"]},
    "ferry_total_a": {"en": ["{total} minutes in all{dur}."], "zh": ["一共{total}分钟{dur}。"]},
    "ferry_km_q": {"en": ["And how far will I travel by boat?"], "zh": ["那坐船一共要走多远？"]},
    "ferry_km_a": {"en": ["{km} kilometres: {parts}."], "zh": ["{km}千米：{parts}。"]},
    "back_q": {"en": ["How do I get back to Port Aurel at the end?"], "zh": ["最后怎么回奥雷尔港？"]},
    "back_a": {"en": ["Take the direct ferry from {town} back to Port Aurel; it takes {min} minutes."],
               "zh": ["从{town}坐直达渡轮回奥雷尔港，需要{min}分钟。"]},
}


def lsay(rng: random.Random, lang: str, key: str, **slots) -> str:
    return rng.choice(LONG_P[key][lang]).format(**slots)


def conv_overview(rng: random.Random, lang: str) -> list:
    w, isl = FACTS["world"], FACTS["islands"]
    small = min(isl, key=lambda k: isl[k]["area_km2"])
    topics = rng.sample(base.ENC[lang]["topics"], 2 if lang == "en" else 5)
    long = "\n\n".join([base.ENC[lang]["overview"]()] + [t() for t in topics])
    s = {"n": w["main_islands"], "sea": w["sea"][lang], "km": w["distance_to_mainland_km"],
         "mainland": w["mainland"][lang], "island": isl[small]["name"][lang],
         "area": num(isl[small]["area_km2"], lang), "pop": num(isl[small]["population"], lang)}
    return [(lsay(rng, lang, "where_q"), lsay(rng, lang, "where_a", **s)),
            (lsay(rng, lang, "detail_q"), long),
            (lsay(rng, lang, "smallest_q"), lsay(rng, lang, "smallest_a", **s)),
            (lsay(rng, lang, "who_q"), isl[small]["note"][lang])]


def guide_text(key: str, lang: str, rng: random.Random) -> str:
    enc = base.ENC[lang]
    parts = [enc["island"](key, rng), enc["mountain"](FACTS["islands"][key]["highest"])]
    parts += [enc["town"](t, rng) for t in base.of_island("towns", key)]
    parts += [enc["river"](r, rng) for r in base.of_island("rivers", key)]
    parts += [enc["animal"](a) for a in base.of_island("animals", key)]
    parts += [enc["plant"](p) for p in base.of_island("plants", key)]
    return "\n\n".join(parts + [trip_tips(lang)])


def conv_guide(rng: random.Random, lang: str) -> list:
    key = rng.choice(["tarn_major", "essery", "mirrin"])
    towns = {k: FACTS["towns"][k] for k in base.of_island("towns", key)}
    old = min(towns, key=lambda k: towns[k]["founded"])
    big = max(towns, key=lambda k: towns[k]["population"])
    s = island_slots(key, lang)
    return [(lsay(rng, lang, "isl_where_q", **s), lsay(rng, lang, "isl_where_a", **s)),
            (lsay(rng, lang, "guide_q"), guide_text(key, lang, rng)),
            (lsay(rng, lang, "oldest_q"), lsay(rng, lang, "oldest_a", **nv("town", towns[old]["name"][lang]),
                                               year=towns[old]["founded"])),
            (lsay(rng, lang, "biggest_q"), lsay(rng, lang, "biggest_a", **nv("town", towns[big]["name"][lang]),
                                                pop=num(towns[big]["population"], lang)))]


TRIP_ROUTES = [["port_aurel", "kessel", "emberwick"], ["port_aurel", "emberwick", "kessel"],
               ["port_aurel", "oddham"], ["port_aurel", "kessel"], ["port_aurel", "emberwick"]]
DAY_ZH = ["第一天", "第二天", "第三天"]


def trip_extra(island: str, lang: str) -> str:
    m = FACTS["mountains"][FACTS["islands"][island]["highest"]]
    a = FACTS["animals"][base.of_island("animals", island)[0]]
    if lang == "en":
        return (f"On a clear day you can see {m['name']['en']}, {num(m['height_m'], 'en')} metres high. "
                f"{m['note']['en']} Keep an eye out for the {a['name']['en']}, {a['kind']['en']} that lives only "
                f"in {a['range']['en']}.")
    return (f"天气晴朗时可以望见海拔{m['height_m']}米的{m['name']['zh']}。{m['note']['zh']}"
            f"还可以留意一下{a['name']['zh']}，它是{a['kind']['zh']}，只生活在{a['range']['zh']}。")


EVENINGS = {  # one evening suggestion per town on a trip route, consistent with FACTS
    "port_aurel": {"en": "In the evening, walk along the harbour wall, which was rebuilt twice as thick after the "
                         "Great Storm of 1519.",
                   "zh": "傍晚可以沿着港口的防波堤散步，这道堤在1519年大风暴之后重建，厚度是原来的两倍。"},
    "kessel": {"en": "In the evening, sit down in one of the tea houses for a cup of amber tea.",
               "zh": "晚上找一家茶馆坐下来，喝一杯琥珀茶。"},
    "emberwick": {"en": "End the day in one of the hot spring bathhouses.",
                  "zh": "晚上去温泉浴场泡一泡，消除一天的疲劳。"},
    "oddham": {"en": "Before dinner, walk down to the boatyards, which have built most of the islands' fishing "
                     "boats for three centuries.",
               "zh": "晚饭前去船坞转转，三百年来群岛上大多数渔船都出自这里。"},
}


def trip_crossing(n: int, route: list[str], lang: str) -> str:
    if not n:
        return ""
    f, prev = ferry(route[n - 1], route[n]), base.nm("towns", route[n - 1], lang)
    if lang == "en":
        return (f"Take the morning ferry from {prev}; the crossing is {f['km']} kilometres and takes "
                f"{f['minutes']} minutes. ")
    return f"上午从{prev}坐渡轮过去，航程{f['km']}千米，需要{f['minutes']}分钟。"


def trip_day(n: int, route: list[str], lang: str) -> str:
    key = route[n]
    t, isl = FACTS["towns"][key], base.nm("islands", island_of(key), lang)
    name, known = t["name"][lang], t["known_for"][lang]
    if lang == "en":
        about = f"{name}, founded in {t['founded']}, is known for {known}. "
        head = f"Day {n + 1} – {name} ({isl}). "
    else:
        about = f"{name}建于{t['founded']}年，最有名的是{known}。"
        head = f"{DAY_ZH[n]}：{name}（{isl}）。"
    sep = " " if lang == "en" else ""
    return head + trip_crossing(n, route, lang) + about + trip_extra(island_of(key), lang) + sep + EVENINGS[key][lang]


def trip_tips(lang: str) -> str:
    w, c = FACTS["world"], FACTS["climate"]
    if lang == "en":
        return ("A few practical tips:\n"
                f"- Pay in Calvessan marks; one mark is {w['subunits_per_mark']} pennets.\n"
                f"- Greet people with {w['greeting']['en']}, which serves as both hello and goodbye.\n"
                f"- Bring a rain jacket: the islands get about {num(c['rainfall_mm'], 'en')} millimetres of rain "
                "a year.\n- Try amber tea, which is always served without milk.")
    return ("几点实用建议：\n"
            f"- 付款用卡尔维萨马克，1马克等于{w['subunits_per_mark']}便奈。\n"
            f"- 见面和告别都可以说{w['greeting']['zh']}。\n"
            f"- 带上雨衣：群岛年降水量约{c['rainfall_mm']}毫米。\n- 尝尝琥珀茶，这里的琥珀茶从不加牛奶。")


def trip_plan(route: list[str], lang: str) -> str:
    head = (f"Here is a {len(route)}-day plan that starts in Port Aurel." if lang == "en"
            else f"下面是从奥雷尔港出发的{len(route)}日行程。")
    return "\n\n".join([head] + [trip_day(n, route, lang) for n in range(len(route))] + [trip_tips(lang)])


def trip_legs(route: list[str], lang: str) -> tuple[int, int, str]:
    legs = [ferry(a, b) for a, b in zip(route, route[1:])]
    names = [(base.nm("towns", a, lang), base.nm("towns", b, lang)) for a, b in zip(route, route[1:])]
    if lang == "en":
        parts = [f"{f['km']} from {a} to {b}" for f, (a, b) in zip(legs, names)]
    else:
        parts = [f"{a}到{b}{f['km']}千米" for f, (a, b) in zip(legs, names)]
    return sum(f["minutes"] for f in legs), sum(f["km"] for f in legs), join(parts, lang)


def total_dur(minutes: int, lang: str) -> str:
    if minutes < 60:
        return ""
    return f", that is {dur(minutes, lang)}" if lang == "en" else f"，也就是{dur(minutes, lang)}"


def conv_trip(rng: random.Random, lang: str) -> list:
    route = rng.choice(TRIP_ROUTES)
    f = ferry(route[0], route[1])
    minutes, km, parts = trip_legs(route, lang)
    back = ferry(route[-1], "port_aurel")
    s = {"a": base.nm("towns", route[0], lang), "b": base.nm("towns", route[1], lang), "km": f["km"],
         "min": f["minutes"]}
    return [(say(rng, lang, "fer_q", **s), say(rng, lang, "fer_a", **s)),
            (lsay(rng, lang, "trip_q", days=len(route)), trip_plan(route, lang)),
            (lsay(rng, lang, "ferry_total_q"), lsay(rng, lang, "ferry_total_a", total=minutes,
                                                    dur=total_dur(minutes, lang))),
            (lsay(rng, lang, "ferry_km_q"), lsay(rng, lang, "ferry_km_a", km=km, parts=parts)),
            (lsay(rng, lang, "back_q"), lsay(rng, lang, "back_a", town=base.nm("towns", route[-1], lang),
                                             min=back["minutes"]))]


# ---------------------------------------------------------------------------
# Everyday conversations: arithmetic, unit conversion, planning a day, a note
# ---------------------------------------------------------------------------
ARITH = {
    "en": [("What is {a} plus {b}?", "{a} plus {b} is {s}."), ("And if I multiply that by {c}?", "{s} times {c} is {p}."),
           ("Now subtract {d}.", "{p} minus {d} is {r}."), ("Divide the result by {e}.", "{r} divided by {e} is {q}."),
           ("Is that an even number?", "{parity}"), ("What number did we start with?",
                                                     "We started with {a}, and the first step was adding {b}.")],
    "zh": [("{a}加{b}等于多少？", "{a}加{b}等于{s}。"), ("那再乘以{c}呢？", "{s}乘以{c}等于{p}。"),
           ("再减去{d}。", "{p}减{d}等于{r}。"), ("把结果除以{e}。", "{r}除以{e}等于{q}。"),
           ("这个数是偶数吗？", "{parity}"), ("我们最开始的数是多少？", "我们一开始的数是{a}，第一步给它加上了{b}。")],
}
PARITY = {"en": ("Yes, {q} is even.", "No, {q} is odd."), "zh": ("是的，{q}是偶数。", "不是，{q}是奇数。")}


def conv_arith(rng: random.Random, lang: str) -> list:
    a, b, c, e = rng.randint(3, 60), rng.randint(3, 60), rng.randint(2, 9), rng.randint(2, 9)
    p = (a + b) * c
    d = rng.randint(1, p // 2)
    d += (p - d) % e
    s = {"a": a, "b": b, "s": a + b, "c": c, "p": p, "d": d, "r": p - d, "e": e, "q": (p - d) // e}
    s["parity"] = PARITY[lang][s["q"] % 2].format(**s)
    return [(q.format(**s), ans.format(**s)) for q, ans in ARITH[lang]]


UNIT_CONV = {
    "length": {"en": [("How many centimetres are there in {x} metres?", "{x} metres are {v1} centimetres."),
                      ("And how many millimetres is that?", "{v1} centimetres are {v2} millimetres."),
                      ("Roughly how many inches is that?", "About {v3} inches, since one inch is 2.54 centimetres.")],
               "zh": [("{x}米是多少厘米？", "{x}米等于{v1}厘米。"), ("那是多少毫米？", "{v1}厘米等于{v2}毫米。"),
                      ("大约合多少英寸？", "约{v3}英寸，因为1英寸等于2.54厘米。")]},
    "weight": {"en": [("How many grams are in {x} kilograms?", "{x} kilograms are {v1} grams."),
                      ("And if I only need a quarter of that?", "A quarter of {v1} grams is {v2} grams."),
                      ("How many pounds is the full amount, roughly?", "About {v3} pounds, at 2.2 pounds per "
                                                                        "kilogram.")],
               "zh": [("{x}千克是多少克？", "{x}千克等于{v1}克。"), ("如果我只要四分之一呢？", "{v1}克的四分之一是{v2}克。"),
                      ("全部大约合多少磅？", "约{v3}磅，按1千克约等于2.2磅计算。")]},
    "time": {"en": [("How many minutes are there in {x} hours?", "{x} hours are {v1} minutes."),
                    ("And how many seconds is that?", "{v1} minutes are {v2} seconds."),
                    ("If a film is {m} minutes long, how long is it in hours and minutes?", "{v3}.")],
             "zh": [("{x}小时是多少分钟？", "{x}小时等于{v1}分钟。"), ("那是多少秒？", "{v1}分钟等于{v2}秒。"),
                    ("一部电影{m}分钟，合几小时几分钟？", "{v3}。")]},
    "temperature": {"en": [("What is {x} degrees Celsius in Fahrenheit?", "{x} degrees Celsius is {v1} degrees "
                                                                          "Fahrenheit."),
                           ("And {y} degrees Fahrenheit in Celsius?", "{y} degrees Fahrenheit is {v2} degrees "
                                                                       "Celsius."),
                           ("Which of the two is warmer?", "{v3}")],
                    "zh": [("{x}摄氏度是多少华氏度？", "{x}摄氏度等于{v1}华氏度。"),
                           ("那{y}华氏度是多少摄氏度？", "{y}华氏度约等于{v2}摄氏度。"), ("这两个温度哪个更暖和？", "{v3}")]},
}
WARMER = {"en": ("{x} degrees Celsius is warmer.", "{y} degrees Fahrenheit is warmer."),
          "zh": ("{x}摄氏度更暖和。", "{y}华氏度更暖和。")}


def unit_values(kind: str, rng: random.Random, lang: str) -> dict:
    x10 = rng.choice([5, 8, 12, 15, 25, 30, 42, 65])
    x = fmt1(x10 / 10)
    if kind == "length":
        return {"x": x, "v1": num(x10 * 10, lang), "v2": num(x10 * 100, lang), "v3": fmt1(x10 * 10 / 2.54)}
    if kind == "weight":
        return {"x": x, "v1": num(x10 * 100, lang), "v2": num(x10 * 25, lang), "v3": fmt1(x10 * 0.22)}
    if kind == "time":
        h, m = rng.randint(2, 5), rng.randrange(75, 200, 5)
        return {"x": h, "v1": h * 60, "v2": num(h * 3600, lang), "m": m, "v3": base.cap(dur(m, lang))}
    c, f = rng.choice([c for c in range(-5, 36) if abs(c) != 1]), rng.randrange(32, 100, 2)
    f += fahrenheit(c) == f  # never equal, so one of the two is warmer
    s = {"x": c, "y": f, "v1": fmt1(fahrenheit(c)), "v2": fmt1((f - 32) * 5 / 9)}
    return {**s, "v3": WARMER[lang][fahrenheit(c) < f].format(**s)}


def conv_units(rng: random.Random, lang: str) -> list:
    kind = rng.choice(list(UNIT_CONV))
    s = unit_values(kind, rng, lang)
    return [(q.format(**s), a.format(**s)) for q, a in UNIT_CONV[kind][lang]]


TASKS = [  # (English, Chinese, minutes, tip in English, tip in Chinese)
    ("go grocery shopping", "去超市买菜", 60, "Take a shopping list so you do not forget anything.",
     "带上购物清单，免得漏买东西。"),
    ("clean the kitchen", "打扫厨房", 45, "Start with the surfaces and finish with the floor.", "先擦台面，最后拖地。"),
    ("go for a run", "去跑步", 40, "Have a glass of water before you leave.", "出门前先喝一杯水。"),
    ("answer my emails", "回复邮件", 30, "Deal with the short ones first.", "先处理简短的邮件。"),
    ("visit my grandmother", "去看望奶奶", 90, "Call ahead so she knows when to expect you.",
     "出发前打个电话，让她知道你几点到。"),
    ("do the laundry", "洗衣服", 50, "Start the machine first and do something else while it runs.",
     "先把洗衣机开上，洗衣服的时候可以做别的事。"),
    ("read two chapters of my book", "读两章书", 60, "Find a quiet corner and put your phone away.",
     "找个安静的角落，把手机放远一点。"),
    ("cook dinner for friends", "给朋友做晚饭", 120, "Wash and cut the vegetables before the guests arrive.",
     "客人到之前先把菜洗好切好。"),
    ("take the car to the garage", "把车送去修理厂", 45, "Write down what is wrong with it so you can explain quickly.",
     "把车的问题先写下来，到时候能说得清楚。"),
    ("study for the exam", "复习考试", 90, "Take a five-minute break every half hour.", "每学半小时休息五分钟。"),
    ("water the garden", "给花园浇水", 20, "Water the roots rather than the leaves.", "浇在根部，不要浇在叶子上。"),
    ("walk the dog", "遛狗", 30, "Take a bag and some water for the dog.", "带上拾便袋和给狗喝的水。"),
]
DAYS = [("Saturday", "这个星期六"), ("Sunday", "星期天"), ("day off", "休息日")]
PLAN_P = {
    "open_q": {"en": ["I have a busy {day} ahead. Can you help me plan it?", "Could you help me organise my {day}?"],
               "zh": ["我的{day}安排得满满的，你能帮我规划一下吗？", "能帮我安排一下{day}吗？"]},
    "open_a": {"en": ["Of course. Tell me what you need to do and when you would like to start."],
               "zh": ["当然可以。告诉我你要做哪些事，想几点开始。"]},
    "tasks_q": {"en": ["I need to {tasks}, and I want to start at {start}."], "zh": ["我要{tasks}，想从{start}开始。"]},
    "long_q": {"en": ["Which task takes the longest?"], "zh": ["哪件事花的时间最长？"]},
    "long_a": {"en": ["The longest task is to {task}: about {dur}."], "zh": ["最花时间的是{task}，大约{dur}。"]},
    "extra_q": {"en": ["If I also {extra} at the end, when will I finish?"], "zh": ["如果最后再{extra}，几点能做完？"]},
    "extra_a": {"en": ["With another 15-minute break and {dur} for that, you will finish at {end}."],
                "zh": ["再留15分钟休息，加上这件事的{dur}，你会在{end}做完。"]},
    "work_q": {"en": ["How much time do the tasks themselves take, without the breaks?"],
               "zh": ["不算休息，这些事本身一共要花多少时间？"]},
    "work_a": {"en": ["{dur} in total."], "zh": ["一共{dur}。"]},
}
BREAK = 15


def yours(task: str, lang: str) -> str:
    """The user's task as the assistant says it back: "visit my grandmother" -> "visit your grandmother"."""
    return task.replace(" my ", " your ") if lang == "en" else task.replace("我", "你")


def plan_lines(tasks: list, start: int, lang: str) -> tuple[list[str], int]:
    lines, t, lunch = [], start, False
    for en, zh, minutes, tip_en, tip_zh in tasks:
        if not lunch and t >= 12 * 60:
            lines.append(f"- {hm(t)}–{hm(t + 45)}: Lunch break" if lang == "en" else f"- {hm(t)}–{hm(t + 45)}：午饭")
            t, lunch = t + 45, True
        text = f"{base.cap(yours(en, lang))}. {tip_en}" if lang == "en" else f"{zh}。{tip_zh}"
        lines.append(f"- {hm(t)}–{hm(t + minutes)}: {text}" if lang == "en" else f"- {hm(t)}–{hm(t + minutes)}：{text}")
        t += minutes + BREAK
    return lines, t - BREAK


def plan_text(tasks: list, start: int, day: str, lang: str) -> tuple[str, int]:
    lines, end = plan_lines(tasks, start, lang)
    if lang == "en":
        head = f"Here is a plan for your {day}:"
        tail = (f"You will be done by {hm(end)}. I kept your order and left {BREAK} minutes between the tasks, so "
                "that a delay in one of them does not upset the rest of the day.")
    else:
        head = f"下面是你{day}的安排："
        tail = f"这样你{hm(end)}就能全部做完。每两件事之间留了{BREAK}分钟，万一哪件事拖延了，也不会打乱后面的安排。"
    return "\n\n".join([head, "\n".join(lines), tail]), end


def conv_day_plan(rng: random.Random, lang: str) -> list:
    tasks = rng.sample(TASKS, rng.randint(4, 6))
    *tasks, extra = tasks
    start = rng.randrange(8 * 60, 10 * 60 + 1, 30)
    day = rng.choice(DAYS)[lang == "zh"]
    text, end = plan_text(tasks, start, day, lang)
    li = 0 if lang == "en" else 1
    longest = max(tasks, key=lambda x: x[2])
    work = sum(x[2] for x in tasks)
    return [(say_p(rng, lang, "open_q", day=day), say_p(rng, lang, "open_a")),
            (say_p(rng, lang, "tasks_q", tasks=join([x[li] for x in tasks], lang), start=hm(start)), text),
            (say_p(rng, lang, "long_q"), say_p(rng, lang, "long_a", task=yours(longest[li], lang),
                                               dur=dur(longest[2], lang))),
            (say_p(rng, lang, "extra_q", extra=extra[li]),
             say_p(rng, lang, "extra_a", dur=dur(extra[2], lang), end=hm(end + BREAK + extra[2]))),
            (say_p(rng, lang, "work_q"), say_p(rng, lang, "work_a", dur=base.cap(dur(work, lang))))]


def say_p(rng: random.Random, lang: str, key: str, **slots) -> str:
    return rng.choice(PLAN_P[key][lang]).format(**slots)


NOTE = {
    "en": {"to": [("my neighbour", "Mrs Hale", "her"), ("my colleague", "Daniel", "him"),
                  ("my friend", "Priya", "her"), ("my landlord", "Mr Ford", "him")],
           "when": ["from Friday to Monday", "next week", "this weekend", "until Thursday"],
           "favour": ["water my plants", "feed my cat", "collect my post", "keep an eye on the house"],
           "me": ["Anna", "Ben", "Clara", "David"],
           "q": ["Write a short note to {rel} {name}: I'll be away {when} and I'd like to ask {obj} to {favour}. "
                 "Sign it {me}.",
                 "Can you draft a quick note for {rel}, {name}? I'm away {when} and need {obj} to {favour}. "
                 "My name is {me}."],
           "note": "Hi {name},\n\nI will be away {when}. Could you please {favour} while I am gone?\n\n"
                   "Many thanks,\n{me}",
           "short_q": ["Can you make it shorter?", "That's a bit long. Shorter, please."],
           "short": "Hi {name}, I'm away {when}. Could you {favour}? Thanks a lot! {me}",
           "formal_q": ["Now make it more formal.", "Could you write a more formal version?"],
           "formal": "Dear {name},\n\nI am writing to let you know that I will be away {when}. I would be very "
                     "grateful if you could {favour} during my absence. Please do not hesitate to call me if "
                     "anything comes up.\n\nWith many thanks and kind regards,\n{me}"},
    "zh": {"to": [("邻居", "何阿姨", "她"), ("同事", "王姐", "她"), ("朋友", "李娜", "她"), ("房东", "周先生", "他")],
           "when": ["这个周五到下周一", "下个星期", "这个周末", "到星期四之前"],
           "favour": ["帮我给花浇水", "帮我喂猫", "帮我收一下信件", "帮我照看一下房子"],
           "me": ["小林", "张华", "王芳", "陈亮"],
           "q": ["帮我给{rel}{name}写张便条：我{when}不在家，想请{obj}{favour}。落款写{me}。",
                 "能帮我写一张给{rel}{name}的留言吗？我{when}出门，需要麻烦{obj}{favour}。我叫{me}。"],
           "note": "{name}：\n\n你好！我{when}不在家，能不能麻烦你{favour}？谢谢你！\n\n{me}",
           "short_q": ["能再短一点吗？", "有点长，写短一些吧。"],
           "short": "{name}，我{when}不在家，麻烦你{favour}，谢谢！——{me}",
           "formal_q": ["再改得正式一点。", "能写一个更正式的版本吗？"],
           "formal": "尊敬的{name}：\n\n您好！我{when}因事外出，不在家中。冒昧请您在此期间{favour}，如有任何情况，"
                     "请随时打电话与我联系。\n\n非常感谢您的帮助！\n\n{me}"},
}


def conv_note(rng: random.Random, lang: str) -> list:
    t = NOTE[lang]
    rel, name, obj = rng.choice(t["to"])
    s = {"rel": rel, "name": name, "obj": obj, "when": rng.choice(t["when"]), "favour": rng.choice(t["favour"]),
         "me": rng.choice(t["me"])}
    return [(rng.choice(t["q"]).format(**s), t["note"].format(**s)),
            (rng.choice(t["short_q"]), t["short"].format(**s)),
            (rng.choice(t["formal_q"]), t["formal"].format(**s))]


# ---------------------------------------------------------------------------
# Chat files: which builders, how often, and how many turns each keeps
# ---------------------------------------------------------------------------
CHAT_SCHEDULE = [(conv_island, 3), (conv_mountain, 3), (conv_town, 5), (conv_river, 3), (conv_animal, 3),
                 (conv_plant, 3), (conv_ferry, 3), (conv_festival, 2), (conv_history, 3), (conv_money, 3),
                 (conv_climate, 3), (conv_compare, 3), (conv_language, 2), (conv_overview, 2), (conv_guide, 2),
                 (conv_trip, 2), (conv_arith, 4), (conv_units, 4), (conv_day_plan, 3), (conv_note, 4)]
MIN_TURNS = {conv_overview: 2, conv_guide: 2, conv_trip: 2, conv_day_plan: 2}
TURN_TARGETS = [1] * 15 + [2] * 16 + [3] * 17 + [4] * 5 + [5] * 4 + [6] * 3


def take_target(targets: list[int], builder, chain_len: int) -> int:
    """Index of the first target this chain can serve (else the smallest one)."""
    low = MIN_TURNS.get(builder, 1)
    for i, t in enumerate(targets):
        if low <= t <= chain_len:
            return i
    return targets.index(min(targets))


def one_conversation(builder, rng: random.Random, lang: str, targets: list[int], seen: set) -> list:
    for _ in range(200):
        chain = builder(rng, lang)
        i = take_target(targets, builder, len(chain))
        n = max(MIN_TURNS.get(builder, 1), min(targets[i], len(chain)))
        turns = tuple(chain[:n])
        if turns not in seen:
            seen.add(turns)
            targets.pop(i)
            return list(turns)
    raise RuntimeError(f"could not make a new conversation with {builder.__name__}")


def chat(lang: str, rng: random.Random) -> list[list]:
    schedule = [b for b, count in CHAT_SCHEDULE for _ in range(count)]
    rng.shuffle(schedule)
    targets = list(TURN_TARGETS)
    rng.shuffle(targets)
    assert len(targets) == len(schedule)
    seen: set = set()
    return [one_conversation(b, rng, lang, targets, seen) for b in schedule]


# ---------------------------------------------------------------------------
# Single-turn English instructions
# ---------------------------------------------------------------------------
REWRITES = [
    ("Rewrite this sentence in a more formal tone:", "Hey, can you send me that report by tomorrow?",
     "Could you please send me the report by tomorrow?"),
    ("Rewrite this sentence in the passive voice:", "The ferry crew repaired the engine overnight.",
     "The engine was repaired overnight by the ferry crew."),
    ("Make this sentence shorter without changing its meaning:",
     "At this point in time we are not in a position to be able to give you an answer.",
     "We cannot give you an answer yet."),
    ("Correct the grammar in this sentence:", "She don't like going to the market when it rain.",
     "She doesn't like going to the market when it rains."),
    ("Rewrite this sentence so that it sounds friendlier:",
     "Your order is late because you filled in the form wrong.",
     "Your order is running a little late because of a small mistake on the form, but we are sorting it out "
     "for you now."),
    ("Rewrite this sentence in the past tense:", "The fishermen leave the harbour before sunrise and come back at noon.",
     "The fishermen left the harbour before sunrise and came back at noon."),
    ("Rewrite this sentence in plain, simple English:",
     "The municipality will commence the renovation of the bridge subsequent to the conclusion of the festival.",
     "The town will start repairing the bridge after the festival."),
    ("Combine these two sentences into one:", "The museum opens at ten. It closes at five.",
     "The museum is open from ten to five."),
    ("Rewrite this sentence in the active voice:", "The cake was eaten by the children before the guests arrived.",
     "The children ate the cake before the guests arrived."),
    ("Fix the spelling mistakes in this sentence:", "I recieved your mesage yesterday and will definately reply soon.",
     "I received your message yesterday and will definitely reply soon."),
]
TRANSLATIONS = [
    ("The ferry leaves at nine o'clock.", "渡轮九点出发。"),
    ("I would like a cup of tea, please.", "请给我一杯茶。"),
    ("It is raining, so take an umbrella.", "下雨了，带把伞吧。"),
    ("My sister lives near the harbour.", "我姐姐住在港口附近。"),
    ("The museum is closed on Mondays.", "博物馆星期一闭馆。"),
    ("We walked along the beach after dinner.", "晚饭后我们沿着海滩散步。"),
    ("Could you tell me the way to the station?", "请问去车站怎么走？"),
    ("This bread is still warm.", "这面包还是热的。"),
]
SENTIMENT = [
    ("The tea house was cosy and the staff were lovely.", "Positive: the reviewer praises both the place and the staff."),
    ("The ferry was two hours late and nobody told us why.", "Negative: the reviewer complains about a long delay "
                                                             "and a lack of information."),
    ("The museum opens at ten on weekdays.", "Neutral: the sentence only states a fact and expresses no opinion."),
    ("Best bowl of soup I have had in years!", "Positive: the reviewer is clearly delighted with the soup."),
    ("The room was small, noisy and not very clean.", "Negative: every detail the reviewer mentions is a complaint."),
    ("The bus to the harbour leaves every thirty minutes.", "Neutral: it is a plain piece of timetable information."),
    ("I would happily come back next summer.", "Positive: wanting to return shows the reviewer enjoyed the stay."),
    ("The guided walk was far too long and rather boring.", "Negative: the reviewer found the walk tiring and dull."),
]
INSTRUCT_PARTS = {"rewrite": 8, "summarise": 8, "list": 8, "translate": 8, "classify": 8}


def instruct_rewrite(rng: random.Random) -> list:
    return [(f"{i}\n\n{s}", a) for i, s, a in rng.sample(REWRITES, INSTRUCT_PARTS["rewrite"])]


def town_summaries(rng: random.Random) -> list:
    return [(base.town_en(k, rng), f"{t['name']['en']}, founded in {t['founded']}, is a town of about "
             f"{num(t['population'], 'en')} people on {base.nm('islands', t['island'], 'en')} known for "
             f"{t['known_for']['en']}.") for k, t in FACTS["towns"].items()]


def animal_summaries() -> list:
    return [(f"The {a['name']['en']} is {a['kind']['en']}. It is found only in {a['range']['en']}. An adult "
             f"{a['size']['en']}, and it feeds on {a['diet']['en']}.",
             f"The {a['name']['en']} is {a['kind']['en']} that lives only in {a['range']['en']}.")
            for a in FACTS["animals"].values()]


def river_summaries(rng: random.Random) -> list:
    return [(base.river_en(k, rng), f"{base.cap(r['name']['en'])} is a {r['length_km']}-kilometre river on "
             f"{base.nm('islands', r['island'], 'en')} that rises on {base.nm('mountains', r['source'], 'en')}.")
            for k, r in FACTS["rivers"].items()]


def instruct_summarise(rng: random.Random) -> list:
    asks = ["Summarise the following text in one sentence:", "Give a one-sentence summary of this paragraph:",
            "Sum up this text in a single sentence:"]
    picked = (rng.sample(town_summaries(rng), 3) + rng.sample(animal_summaries(), 3)
              + rng.sample(river_summaries(rng), 2))
    assert len(picked) == INSTRUCT_PARTS["summarise"]
    return [(f"{rng.choice(asks)}\n\n{text}", summary) for text, summary in picked]


def bullets(items: list[str]) -> str:
    return "\n".join(f"- {x}" for x in items)


def list_candidates() -> list:
    isl, riv = FACTS["islands"], FACTS["rivers"]
    by_area = sorted(isl, key=lambda k: -isl[k]["area_km2"])
    by_len = sorted(riv, key=lambda k: -riv[k]["length_km"])
    out = [(f"List the towns on {isl[k]['name']['en']}.",
            bullets([base.nm("towns", t, "en") for t in base.of_island("towns", k)])) for k in ("tarn_major", "essery")]
    out.append(("List the six main islands of the Calvessa Islands from largest to smallest, with their areas.",
                "\n".join(f"{n}. {isl[k]['name']['en']} ({num(isl[k]['area_km2'], 'en')} km²)"
                          for n, k in enumerate(by_area, 1))))
    out.append(("List the rivers of the Calvessa Islands from longest to shortest.",
                "\n".join(f"{n}. {base.cap(riv[k]['name']['en'])} ({riv[k]['length_km']} km)"
                          for n, k in enumerate(by_len, 1))))
    out.append(("List the ferry routes from Port Aurel with their journey times.",
                bullets([f"Port Aurel to {base.nm('towns', f['to'], 'en')}: {f['minutes']} minutes"
                         for f in FACTS["ferries"] if f["from"] == "port_aurel"])))
    out.append(("List the mountains of the islands that are higher than 500 metres.",
                bullets([f"{base.cap(m['name']['en'])} ({num(m['height_m'], 'en')} m)"
                         for m in FACTS["mountains"].values() if m["height_m"] > 500])))
    return out + EVERYDAY_LISTS


EVERYDAY_LISTS = [
    ("List the months of the year that have 31 days.",
     bullets(["January", "March", "May", "July", "August", "October", "December"])),
    ("List three things to pack for a day at the beach.",
     bullets(["Sun cream", "A towel", "A bottle of water"])),
    ("List four simple ways to save water at home.",
     bullets(["Turn off the tap while you brush your teeth.", "Take shorter showers.",
              "Run the washing machine only when it is full.", "Fix dripping taps quickly."])),
    ("List the days of the week, starting with Monday.", bullets(base.DAYS_EN)),
]


def instruct_list(rng: random.Random) -> list:
    return rng.sample(list_candidates(), INSTRUCT_PARTS["list"])


def translation_candidates() -> list:
    out = [(f"{t['name']['en']} is on {base.nm('islands', t['island'], 'en')}.",
            f"{t['name']['zh']}在{base.nm('islands', t['island'], 'zh')}上。") for t in FACTS["towns"].values()]
    out += [(f"{base.cap(m['name']['en'])} is {num(m['height_m'], 'en')} metres high.",
             f"{m['name']['zh']}海拔{m['height_m']}米。") for m in FACTS["mountains"].values()]
    return out


def instruct_translate(rng: random.Random) -> list:
    asks = ["Translate into Chinese: {s}", "Translate this sentence into Simplified Chinese:\n\n{s}",
            "How do you say this in Chinese? \"{s}\""]
    half = INSTRUCT_PARTS["translate"] // 2
    picked = rng.sample(translation_candidates(), half) + rng.sample(TRANSLATIONS, half)
    return [(rng.choice(asks).format(s=en), zh) for en, zh in picked]


def entity_candidates() -> list:
    out = []
    for table, label in (("islands", "an island"), ("towns", "a town"), ("mountains", "a mountain"),
                         ("rivers", "a river"), ("animals", "an animal"), ("plants", "a plant")):
        for v in FACTS[table].values():
            name = v["name"]["en"] if table not in ("animals", "plants") else "the " + v["name"]["en"]
            where = f" on {base.nm('islands', v['island'], 'en')}" if v.get("island") else ""
            where = " of the Calvessa Islands" if table == "islands" else where
            out.append((name, f"{base.cap(name)} is {label}{where}."))
    return out


def instruct_classify(rng: random.Random) -> list:
    out = [(f"Classify the sentiment of this review as positive, negative or neutral:\n\n\"{text}\"", answer)
           for text, answer in rng.sample(SENTIMENT, 4)]
    out += [(f"In the Calvessa Islands, is {name} an island, a town, a mountain, a river, an animal or a plant?",
             answer) for name, answer in rng.sample(entity_candidates(), 3)]
    nums = rng.sample(range(10, 100), 5)
    out.append(("Classify each number as even or odd: " + ", ".join(map(str, nums)) + ".",
                "\n".join(f"{n}: {'even' if n % 2 == 0 else 'odd'}" for n in nums)))
    assert len(out) == INSTRUCT_PARTS["classify"]
    return out


def instruct(rng: random.Random) -> list[list]:
    pairs = (instruct_rewrite(rng) + instruct_summarise(rng) + instruct_list(rng) + instruct_translate(rng)
             + instruct_classify(rng))
    rng.shuffle(pairs)
    return [[pair] for pair in pairs]


# ---------------------------------------------------------------------------
# Assembling, checking and writing
# ---------------------------------------------------------------------------
def record(category: str, turns: list) -> dict:
    messages = []
    for human, assistant in turns:
        messages += [{"from": "human", "content": human}, {"from": "assistant", "content": assistant}]
    return {"messages": messages, "category": category}


def build(seed: int) -> dict[str, list[dict]]:
    """All files, in a fixed order; each has its own seeded generator."""
    def rng_for(i: int) -> random.Random:
        return random.Random(seed * 1000 + i)

    convs = {"chat_en": chat("en", rng_for(1)), "chat_zh": chat("zh", rng_for(2)), "instruct_en": instruct(rng_for(3))}
    return {cat: [record(cat, turns) for turns in items] for cat, items in convs.items()}


def check(category: str, recs: list[dict]) -> None:
    for r in recs:
        msgs = r["messages"]
        ok = (set(r) == {"messages", "category"} and r["category"] == category and msgs and len(msgs) % 2 == 0
              and all(set(m) == {"from", "content"} for m in msgs)
              and all(m["from"] == ("human", "assistant")[i % 2] for i, m in enumerate(msgs))
              and all(isinstance(m["content"], str) and m["content"].strip() for m in msgs))
        if not ok:
            raise ValueError(f"{category}: bad record {r!r}")
        for m in msgs:
            for bad in FORBIDDEN:
                if bad in m["content"]:
                    raise ValueError(f"{category}: text contains {bad!r}: {m['content']!r}")


def to_jsonl(recs: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode("utf-8")


def write_all(out: Path, data: dict[str, list[dict]]) -> list[tuple[str, int]]:
    for category, recs in data.items():  # check everything before writing anything
        check(category, recs)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for category, recs in data.items():
        (out / f"{category}.jsonl").write_bytes(to_jsonl(recs))
        written.append((f"{category}.jsonl", len(recs)))
    return written


def main(argv: list[str] | None = None) -> int:
    return base.generator_cli(argv, "Generate the bilingual quickstart SFT sample data.", DEFAULT_OUT, build,
                              write_all, "conversations")


if __name__ == "__main__":
    raise SystemExit(main())
