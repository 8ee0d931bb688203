# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)
"""Regenerate the bundled sample data sets (deterministic; written for gpudesk).

    python make_samples.py        # rewrites intents.tsv, translation.tsv, corpus.txt,
                                  # histories.tsv next to this file

The sentences come from small hand-written templates, so they carry no third-party text.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

INTENTS = {
    "weather": (
        [
            "what's the weather like in {city}",
            "will it rain in {city} {when}",
            "how hot is it in {city} {when}",
            "do I need an umbrella {when}",
            "weather forecast for {city}",
        ],
        [
            "{city}{when_zh}天气怎么样",
            "{when_zh}{city}会下雨吗",
            "{city}{when_zh}热不热",
            "{when_zh}需要带伞吗",
            "查一下{city}的天气预报",
        ],
    ),
    "alarm": (
        [
            "set an alarm for {time}",
            "wake me up at {time} {when}",
            "cancel my {time} alarm",
            "remind me at {time} to {task}",
        ],
        [
            "设一个{time_zh}的闹钟",
            "{when_zh}{time_zh}叫我起床",
            "取消{time_zh}的闹钟",
            "{time_zh}提醒我{task_zh}",
        ],
    ),
    "music": (
        [
            "play some {genre} music",
            "put on a {genre} playlist",
            "play the next song",
            "turn the music up",
            "i want to hear {genre}",
        ],
        [
            "播放一些{genre_zh}音乐",
            "来一个{genre_zh}歌单",
            "下一首歌",
            "把音乐声音调大",
            "我想听{genre_zh}",
        ],
    ),
    "greeting": (
        [
            "hello there",
            "good morning",
            "hi, how are you",
            "hey, nice to meet you",
            "good evening, {name}",
        ],
        ["你好", "早上好", "你好吗", "很高兴认识你", "{name}，晚上好"],
    ),
    "navigation": (
        [
            "how do I get to {place}",
            "navigate to the nearest {place}",
            "how far is {place} from here",
            "show me the way to {place} in {city}",
        ],
        [
            "去{place_zh}怎么走",
            "导航到最近的{place_zh}",
            "{place_zh}离这里多远",
            "带我去{city}的{place_zh}",
        ],
    ),
    "shopping": (
        [
            "add {item} to my shopping list",
            "order more {item}",
            "how much is {item}",
            "buy {item} {when}",
        ],
        ["把{item_zh}加到购物清单", "再订一些{item_zh}", "{item_zh}多少钱", "{when_zh}买{item_zh}"],
    ),
    "translate": (
        [
            "how do you say {item} in chinese",
            "translate '{phrase}' into chinese",
            "what does {item_zh} mean in english",
        ],
        ["{item}用中文怎么说", "把“{phrase_zh}”翻译成英文", "{item_zh}的英文是什么"],
    ),
    "timer": (
        [
            "start a timer for {mins} minutes",
            "set a {mins} minute timer",
            "how much time is left on my timer",
            "stop the timer",
        ],
        ["计时{mins}分钟", "设一个{mins}分钟的计时器", "计时器还剩多少时间", "停止计时"],
    ),
}

SLOTS = {
    "city": ["Beijing", "Shanghai", "London", "Paris", "Tokyo", "Chengdu"],
    "when": ["today", "tomorrow", "this weekend", "tonight"],
    "when_zh": ["今天", "明天", "这个周末", "今晚"],
    "time": ["7 am", "6:30", "noon", "9 pm"],
    "time_zh": ["早上七点", "六点半", "中午", "晚上九点"],
    "task": ["call mom", "take my medicine", "feed the cat"],
    "task_zh": ["给妈妈打电话", "吃药", "喂猫"],
    "genre": ["jazz", "rock", "classical", "pop"],
    "genre_zh": ["爵士", "摇滚", "古典", "流行"],
    "name": ["Alice", "Wei", "Tom", "小明"],
    "place": ["airport", "train station", "hospital", "coffee shop", "library"],
    "place_zh": ["机场", "火车站", "医院", "咖啡店", "图书馆"],
    "item": ["milk", "apples", "rice", "coffee", "bread"],
    "item_zh": ["牛奶", "苹果", "米饭", "咖啡", "面包"],
    "phrase": ["good night", "thank you", "see you later"],
    "phrase_zh": ["晚安", "谢谢", "回头见"],
    "mins": ["5", "10", "15", "25"],
}


def fill(template: str, rng: random.Random) -> str:
    out = template
    for key in sorted(SLOTS, key=len, reverse=True):
        token = "{" + key + "}"
        while token in out:
            out = out.replace(token, rng.choice(SLOTS[key]), 1)
    return out


def intents(rng: random.Random, per_label: int = 40) -> list[str]:
    lines = []
    for label, (en, zh) in INTENTS.items():
        seen: set[str] = set()
        tries = 0
        while len(seen) < per_label and tries < 2000:
            tries += 1
            seen.add(fill(rng.choice(en if len(seen) % 2 else zh), rng))
        lines += [f"{text}\t{label}" for text in sorted(seen)]
    rng.shuffle(lines)
    return lines


# (english, english 3rd person, chinese)
SUBJECTS = [
    ("I", False, "我"),
    ("you", False, "你"),
    ("we", False, "我们"),
    ("they", False, "他们"),
    ("he", True, "他"),
    ("she", True, "她"),
    ("my friend", True, "我的朋友"),
    ("the teacher", True, "老师"),
]
VERBS = [
    ("like", "likes", "喜欢"),
    ("want", "wants", "想要"),
    ("buy", "buys", "买"),
    ("need", "needs", "需要"),
    ("see", "sees", "看见"),
]
OBJECTS = [
    ("apples", "苹果"),
    ("tea", "茶"),
    ("books", "书"),
    ("the cat", "那只猫"),
    ("flowers", "花"),
    ("new shoes", "新鞋"),
    ("coffee", "咖啡"),
    ("music", "音乐"),
]
NOUNS = [
    ("the weather", "天气"),
    ("this city", "这个城市"),
    ("the food", "食物"),
    ("the room", "房间"),
    ("the book", "这本书"),
    ("the river", "河"),
]
ADJS = [("good", "好"), ("big", "大"), ("beautiful", "漂亮"), ("cold", "冷"), ("quiet", "安静")]
PLACES = [
    ("the station", "车站"),
    ("the hospital", "医院"),
    ("the library", "图书馆"),
    ("the bank", "银行"),
    ("the park", "公园"),
    ("my phone", "我的手机"),
]


def translation_pairs(rng: random.Random) -> list[str]:
    pairs = []
    for (s, third, s_zh), (v, v3, v_zh), (o, o_zh) in itertools.product(SUBJECTS, VERBS, OBJECTS):
        en = f"{s} {v3 if third else v} {o}."
        pairs.append((en[0].upper() + en[1:], f"{s_zh}{v_zh}{o_zh}。"))
    for (n, n_zh), (a, a_zh) in itertools.product(NOUNS, ADJS):
        pairs.append((f"{n[0].upper() + n[1:]} is very {a}.", f"{n_zh}很{a_zh}。"))
    for p, p_zh in PLACES:
        pairs.append((f"Where is {p}?", f"{p_zh}在哪里？"))
    rng.shuffle(pairs)
    return [f"{en}\t{zh}" for en, zh in pairs[:400]]


def corpus(rng: random.Random, n: int = 300) -> list[str]:
    lines = []
    for _ in range(n):
        (s, third, s_zh), (v, v3, v_zh), (o, o_zh) = (
            rng.choice(SUBJECTS),
            rng.choice(VERBS),
            rng.choice(OBJECTS),
        )
        (nn, nn_zh), (a, a_zh) = rng.choice(NOUNS), rng.choice(ADJS)
        city = rng.choice(SLOTS["city"])
        en = f"{s} {v3 if third else v} {o} in {city}, and {nn} is {a}."
        zh = f"{s_zh}在{city}{v_zh}{o_zh}，{nn_zh}很{a_zh}。"
        lines.append(en[0].upper() + en[1:] if rng.random() < 0.6 else zh)
    return lines


def histories(rng: random.Random, users: int = 400, items: int = 120, genres: int = 8) -> list[str]:
    """Items form per-genre chains; users mostly walk along chains of two favourite genres."""
    per = items // genres
    chain = {g: [g * per + k + 1 for k in range(per)] for g in range(genres)}
    lines = []
    for u in range(users):
        favs = rng.sample(range(genres), 2)
        g = favs[0]
        pos = rng.randrange(per)
        seq = []
        for _ in range(rng.randint(8, 30)):
            seq.append(chain[g][pos])
            r = rng.random()
            if r < 0.75:
                pos = (pos + 1) % per
            elif r < 0.9:
                g, pos = rng.choice(favs), rng.randrange(per)
            else:
                g, pos = rng.randrange(genres), rng.randrange(per)
        lines.append(f"u{u:04d}\t" + " ".join(f"i{i:03d}" for i in seq))
    return lines


def main() -> None:
    files = {
        "intents.tsv": intents(random.Random(1)),
        "translation.tsv": translation_pairs(random.Random(2)),
        "corpus.txt": corpus(random.Random(3)),
        "histories.tsv": histories(random.Random(4)),
    }
    for name, lines in files.items():
        (HERE / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{name}: {len(lines)} lines")


if __name__ == "__main__":
    main()
