"""Generate the small bilingual (English / Simplified Chinese) quickstart pretraining corpus.

Every text is produced here from hand-written templates and slot fillers; nothing
is copied from books, websites or datasets. The encyclopedia and question/answer
records describe an invented world, the Calvessa Islands (卡尔维萨群岛), so that no
real model can already know the facts; both languages are rendered from the one
fact table `FACTS` below, so the English and Chinese facts agree.

Files written to `data/pretrain/` next to this script (JSON Lines, UTF-8, one
object per line with exactly the keys `source`, `target`, `category`; `source`
is context that is not trained on, `target` is trained on):

    encyclopedia_en.jsonl  encyclopedia_zh.jsonl   paragraphs about the islands
    story_en.jsonl.gz      story_zh.jsonl          everyday stories (English file gzipped)
    qa_en.jsonl            qa_zh.jsonl             question -> answer
    riddle_zh.jsonl                                Chinese riddle -> answer

Run it from the repository root:

    python applications/quickstart/make_sample_data.py            # default: --seed 0
    python applications/quickstart/make_sample_data.py --out /tmp/sample

The output is committed to the repository. Generation uses only
`random.Random(seed)` and ordered data, and the gzip file is written with
mtime=0 and no file name, so regenerating with the same seed must give
byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "pretrain"
FORBIDDEN = ("<s>", "</s>", "<unk>", "<|")

# ---------------------------------------------------------------------------
# The fact table of the invented world. Everything the encyclopedia and the
# question/answer files say about the Calvessa Islands comes from here, in both
# languages. Numbers are plain ints; text is {"en": ..., "zh": ...}. Ids (dict
# keys such as "tarn_major") link entries to each other. A later task may
# generate held-out questions from this same table.
# ---------------------------------------------------------------------------
FACTS = {
    "world": {
        "name": {"en": "the Calvessa Islands", "zh": "卡尔维萨群岛"},
        "adjective": {"en": "Calvessan", "zh": "卡尔维萨"},
        "sea": {"en": "the Serin Sea", "zh": "塞林海"},
        "mainland": {"en": "Dovria", "zh": "多弗里亚"},
        "distance_to_mainland_km": 310,
        "capital": "port_aurel",
        "main_islands": 6,
        "total_area_km2": 2461,
        "population": 97177,
        "census_year": 2019,
        "highest_point": "mount_obren",
        "language": {"en": "Calvessan", "zh": "卡尔维萨语"},
        "greeting": {"en": "\"brena\"", "zh": "“布雷娜”"},
        "currency": {"en": "the Calvessan mark", "zh": "卡尔维萨马克"},
        "currency_subunit": {"en": "pennets", "zh": "便奈"},
        "subunits_per_mark": 100,
        "national_flower": "starbell",
    },
    "islands": {
        "tarn_major": {
            "name": {"en": "Tarn Major", "zh": "大塔恩岛"},
            "area_km2": 1284, "population": 61400, "coastline_km": 212, "highest": "mount_obren",
            "position": {"en": "in the centre of the archipelago", "zh": "位于群岛中部"},
            "landscape": {"en": "granite hills, mist pine forests and broad river valleys",
                          "zh": "花岗岩丘陵、雾松林和宽阔的河谷"},
            "note": {"en": "It is the largest and most populous island, and the capital stands on its southern shore.",
                     "zh": "它是面积最大、人口最多的岛屿，首府就坐落在它的南岸。"},
        },
        "essery": {
            "name": {"en": "Essery", "zh": "埃瑟里岛"},
            "area_km2": 547, "population": 19800, "coastline_km": 131, "highest": "kessel_peak",
            "position": {"en": "in the north of the archipelago", "zh": "位于群岛北部"},
            "landscape": {"en": "terraced slopes covered with amberleaf gardens", "zh": "种满琥珀叶茶园的梯田山坡"},
            "note": {"en": "Almost all of the islands' amberleaf tea is grown here.",
                     "zh": "群岛几乎所有的琥珀叶茶都产自这里。"},
        },
        "mirrin": {
            "name": {"en": "Mirrin", "zh": "米林岛"},
            "area_km2": 318, "population": 6120, "coastline_km": 88, "highest": "mount_cinder",
            "position": {"en": "in the south-east of the archipelago", "zh": "位于群岛东南部"},
            "landscape": {"en": "black lava fields, warm springs and red fern valleys",
                          "zh": "黑色熔岩地、温泉和长满红色蕨类的山谷"},
            "note": {"en": "It is the only volcanic island of the group.", "zh": "它是群岛中唯一的火山岛。"},
        },
        "little_tarn": {
            "name": {"en": "Little Tarn", "zh": "小塔恩岛"},
            "area_km2": 212, "population": 8350, "coastline_km": 74, "highest": "grey_knoll",
            "position": {"en": "just west of Tarn Major", "zh": "位于大塔恩岛以西不远处"},
            "landscape": {"en": "low grassy hills and long sandy beaches", "zh": "低矮的草丘和绵长的沙滩"},
            "note": {"en": "Its boatyards have built most of the islands' fishing boats for three centuries.",
                     "zh": "三百年来，群岛上大多数渔船都出自这里的船坞。"},
        },
        "halvoe": {
            "name": {"en": "Halvoe", "zh": "哈尔沃岛"},
            "area_km2": 96, "population": 1470, "coastline_km": 41, "highest": "fenn_hill",
            "position": {"en": "off the eastern coast of Tarn Major", "zh": "位于大塔恩岛东岸外"},
            "landscape": {"en": "salt marshes, reed beds and steep sea cliffs", "zh": "盐沼、芦苇荡和陡峭的海崖"},
            "note": {"en": "Most of the island is a nature reserve for sea birds.",
                     "zh": "岛上大部分土地是海鸟自然保护区。"},
        },
        "sorrel_rock": {
            "name": {"en": "Sorrel Rock", "zh": "索雷尔礁"},
            "area_km2": 4, "population": 37, "coastline_km": 9, "highest": "the_crown",
            "position": {"en": "at the far western edge of the archipelago", "zh": "位于群岛最西端"},
            "landscape": {"en": "bare rock and thin turf", "zh": "裸露的岩石和稀薄的草皮"},
            "note": {"en": "Its only residents are the lighthouse keepers, the weather station staff "
                             "and their families.",
                     "zh": "岛上的居民只有灯塔看守人、气象站工作人员和他们的家人。"},
        },
    },
    "mountains": {
        "mount_obren": {"name": {"en": "Mount Obren", "zh": "奥布伦山"}, "island": "tarn_major", "height_m": 1742,
                        "note": {"en": "Its summit is covered with snow from December to March.",
                                 "zh": "每年十二月到次年三月，山顶都被积雪覆盖。"}},
        "mount_cinder": {"name": {"en": "Mount Cinder", "zh": "辛德山"}, "island": "mirrin", "height_m": 1115,
                         "note": {"en": "It is a volcano that last erupted in 1754.",
                                  "zh": "它是一座火山，最近一次喷发是在1754年。"}},
        "kessel_peak": {"name": {"en": "Kessel Peak", "zh": "凯塞尔峰"}, "island": "essery", "height_m": 903,
                        "note": {"en": "Amberleaf is grown on its lower slopes up to about 600 metres.",
                                 "zh": "它海拔约600米以下的山坡上种着琥珀叶。"}},
        "grey_knoll": {"name": {"en": "Grey Knoll", "zh": "灰丘"}, "island": "little_tarn", "height_m": 386,
                       "note": {"en": "On clear days both Tarn Major and Sorrel Rock can be seen from the top.",
                                "zh": "天气晴朗时，从山顶可以同时望见大塔恩岛和索雷尔礁。"}},
        "fenn_hill": {"name": {"en": "Fenn Hill", "zh": "芬恩山"}, "island": "halvoe", "height_m": 142,
                      "note": {"en": "A wooden bird hide stands on its summit.", "zh": "山顶上有一座木制的观鸟屋。"}},
        "the_crown": {"name": {"en": "the Crown", "zh": "王冠岩"}, "island": "sorrel_rock", "height_m": 58,
                      "note": {"en": "The lighthouse is built on top of it.", "zh": "灯塔就建在它的顶上。"}},
    },
    "towns": {
        "port_aurel": {"name": {"en": "Port Aurel", "zh": "奥雷尔港"}, "island": "tarn_major",
                       "population": 22600, "founded": 1388,
                       "known_for": {"en": "its busy harbour and the Tide Hall, where the Council of Tides meets",
                                     "zh": "繁忙的港口和潮汐议会开会的潮汐厅"}},
        "windle": {"name": {"en": "Windle", "zh": "温德尔"}, "island": "tarn_major",
                   "population": 9100, "founded": 1512,
                   "known_for": {"en": "its wool mills and striped blankets", "zh": "羊毛纺织厂和条纹毛毯"}},
        "brackmouth": {"name": {"en": "Brackmouth", "zh": "布拉克茅斯"}, "island": "tarn_major",
                       "population": 5400, "founded": 1466,
                       "known_for": {"en": "its fishing fleet and smoked bellfish", "zh": "捕鱼船队和熏铃鱼"}},
        "kessel": {"name": {"en": "Kessel", "zh": "凯塞尔"}, "island": "essery",
                   "population": 8800, "founded": 1421,
                   "known_for": {"en": "its amberleaf tea houses", "zh": "琥珀叶茶馆"}},
        "lowen_cross": {"name": {"en": "Lowen Cross", "zh": "洛文十字镇"}, "island": "essery",
                        "population": 3700, "founded": 1690,
                        "known_for": {"en": "its Thursday market, the largest in the islands",
                                      "zh": "每周四的集市，这是群岛上规模最大的集市"}},
        "saltery": {"name": {"en": "Saltery", "zh": "索尔特里"}, "island": "essery",
                    "population": 2200, "founded": 1744,
                    "known_for": {"en": "the salt pans along Saltery Bay", "zh": "索尔特里湾沿岸的盐田"}},
        "oddham": {"name": {"en": "Oddham", "zh": "奥德姆"}, "island": "little_tarn",
                   "population": 4900, "founded": 1603,
                   "known_for": {"en": "its boatyards", "zh": "造船坞"}},
        "emberwick": {"name": {"en": "Emberwick", "zh": "恩伯威克"}, "island": "mirrin",
                      "population": 4300, "founded": 1577,
                      "known_for": {"en": "its hot spring bathhouses", "zh": "温泉浴场"}},
        "ostwater": {"name": {"en": "Ostwater", "zh": "奥斯特沃特"}, "island": "mirrin",
                     "population": 1200, "founded": 1822,
                     "known_for": {"en": "the geothermal power station that supplies much of Mirrin",
                                   "zh": "为米林岛大部分地区供电的地热发电站"}},
        "fenn": {"name": {"en": "Fenn", "zh": "芬恩村"}, "island": "halvoe",
                 "population": 1100, "founded": 1701,
                 "known_for": {"en": "its bird observatory", "zh": "鸟类观测站"}},
    },
    "rivers": {
        "sable": {"name": {"en": "the River Sable", "zh": "萨布尔河"}, "island": "tarn_major", "length_km": 64,
                  "source": "mount_obren",
                  "mouth": {"en": "flows into the sea at Brackmouth", "zh": "在布拉克茅斯注入大海"},
                  "note": {"en": "It is the longest river in the islands, and the bellfish lives in its lower course.",
                           "zh": "它是群岛上最长的河流，铃鱼就生活在它的下游。"}},
        "wend": {"name": {"en": "the River Wend", "zh": "温德河"}, "island": "tarn_major", "length_km": 38,
                 "source": "mount_obren",
                 "mouth": {"en": "joins the River Sable below Windle", "zh": "在温德尔下游汇入萨布尔河"},
                 "note": {"en": "Its water once drove the wheels of the Windle wool mills.",
                          "zh": "过去，温德尔羊毛纺织厂的水车就靠它的河水转动。"}},
        "cal": {"name": {"en": "the River Cal", "zh": "卡尔河"}, "island": "essery", "length_km": 27,
                "source": "kessel_peak",
                "mouth": {"en": "reaches the sea in Saltery Bay", "zh": "在索尔特里湾入海"},
                "note": {"en": "The amberleaf gardens on both banks are watered from it.",
                         "zh": "两岸的琥珀叶茶园都靠它灌溉。"}},
        "ashe": {"name": {"en": "the River Ashe", "zh": "阿什河"}, "island": "mirrin", "length_km": 16,
                 "source": "mount_cinder",
                 "mouth": {"en": "flows into the sea east of Emberwick", "zh": "在恩伯威克以东流入大海"},
                 "note": {"en": "Because it is fed by hot springs, its water is about 31 degrees Celsius "
                                 "at the source.",
                          "zh": "它由温泉补给，源头的水温约为31摄氏度。"}},
        "lanner": {"name": {"en": "Lanner Brook", "zh": "兰纳溪"}, "island": "little_tarn", "length_km": 11,
                   "source": "grey_knoll",
                   "mouth": {"en": "runs into the harbour of Oddham", "zh": "流入奥德姆港湾"},
                   "note": {"en": "It is shallow enough to wade across almost everywhere.",
                            "zh": "它水很浅，几乎在任何地方都可以蹚水走过去。"}},
    },
    "animals": {
        "glimmerfox": {"name": {"en": "glimmerfox", "zh": "微光狐"},
                       "kind": {"en": "a small fox", "zh": "一种小型狐狸"}, "island": "tarn_major",
                       "range": {"en": "the forests and shores of Tarn Major", "zh": "大塔恩岛的森林和海岸"},
                       "size": {"en": "weighs about 3.2 kilograms", "zh": "体重约3.2千克"},
                       "diet": {"en": "shore crabs, beetles and saltthorn berries", "zh": "海岸蟹、甲虫和盐棘果"},
                       "trait": {"en": "its silver-tipped fur seems to shine faintly under the moon",
                                 "zh": "它毛尖银白，在月光下仿佛微微发亮"},
                       "estimate": 4200, "unit": {"en": "animals", "zh": "只"}},
        "lantern_heron": {"name": {"en": "lantern heron", "zh": "灯笼鹭"},
                          "kind": {"en": "a wading bird", "zh": "一种涉禽"}, "island": "halvoe",
                          "range": {"en": "the salt marshes of Halvoe", "zh": "哈尔沃岛的盐沼"},
                          "size": {"en": "stands about 94 centimetres tall", "zh": "身高约94厘米"},
                          "diet": {"en": "eels and small fish", "zh": "鳗鱼和小鱼"},
                          "trait": {"en": "in the breeding season its orange throat pouch looks as bright "
                                          "as a lantern at dusk",
                                    "zh": "繁殖季节里，它橙色的喉囊在黄昏时像灯笼一样醒目"},
                          "estimate": 860, "unit": {"en": "breeding pairs", "zh": "对"}},
        "stone_tortoise": {"name": {"en": "Mirrin stone tortoise", "zh": "米林石龟"},
                           "kind": {"en": "a large tortoise", "zh": "一种大型陆龟"}, "island": "mirrin",
                           "range": {"en": "the warm valleys of Mirrin", "zh": "米林岛温暖的山谷"},
                           "size": {"en": "has a shell up to 70 centimetres long", "zh": "龟壳最长可达70厘米"},
                           "diet": {"en": "ferns, above all ember fern", "zh": "蕨类，尤其是余烬蕨"},
                           "trait": {"en": "it can live for more than 150 years and likes to rest on rocks "
                                           "warmed by the springs",
                                     "zh": "它能活150年以上，喜欢趴在被温泉烘暖的岩石上休息"},
                           "estimate": 1300, "unit": {"en": "animals", "zh": "只"}},
        "tide_hare": {"name": {"en": "tide hare", "zh": "潮兔"},
                      "kind": {"en": "a coastal hare", "zh": "一种生活在海边的野兔"}, "island": "little_tarn",
                      "range": {"en": "the beaches and dunes of Little Tarn", "zh": "小塔恩岛的海滩和沙丘"},
                      "size": {"en": "weighs about 2.6 kilograms", "zh": "体重约2.6千克"},
                      "diet": {"en": "seaweed and dune grasses", "zh": "海藻和沙丘上的草"},
                      "trait": {"en": "it comes down to the beach to feed whenever the tide is low, by day or by night",
                                "zh": "无论白天黑夜，只要退潮，它就跑到海滩上觅食"},
                      "estimate": 2900, "unit": {"en": "animals", "zh": "只"}},
        "bellfish": {"name": {"en": "bellfish", "zh": "铃鱼"},
                     "kind": {"en": "a freshwater fish", "zh": "一种淡水鱼"}, "island": "tarn_major",
                     "range": {"en": "the lower River Sable", "zh": "萨布尔河下游"},
                     "size": {"en": "grows to about 40 centimetres", "zh": "体长约40厘米"},
                     "diet": {"en": "insects and freshwater shrimp", "zh": "昆虫和淡水虾"},
                     "trait": {"en": "in October, the spawning month, it makes a soft ringing sound "
                                     "that can be heard from the bank",
                               "zh": "每年十月产卵时，它会发出轻轻的铃声，站在岸边就能听到"},
                     "estimate": None, "unit": {"en": "fish", "zh": "条"}},
        "velvet_moth": {"name": {"en": "velvet moth", "zh": "丝绒蛾"},
                        "kind": {"en": "a large night-flying moth", "zh": "一种夜间飞行的大型蛾类"}, "island": "essery",
                        "range": {"en": "the amberleaf gardens of Essery", "zh": "埃瑟里岛的琥珀叶茶园"},
                        "size": {"en": "has a wingspan of about 14 centimetres", "zh": "翼展约14厘米"},
                        "diet": {"en": "the nectar of amberleaf and starbell flowers", "zh": "琥珀叶和星铃花的花蜜"},
                        "trait": {"en": "it flies only on warm nights and is the main pollinator of amberleaf",
                                  "zh": "它只在温暖的夜晚飞行，是琥珀叶最主要的传粉者"},
                        "estimate": None, "unit": {"en": "moths", "zh": "只"}},
    },
    "plants": {
        "amberleaf": {"name": {"en": "amberleaf", "zh": "琥珀叶"},
                      "kind": {"en": "a tea shrub", "zh": "一种茶灌木"}, "island": "essery",
                      "range": {"en": "the terraces of Essery", "zh": "埃瑟里岛的梯田"},
                      "size": {"en": "grows up to 2 metres tall", "zh": "高可达2米"},
                      "use": {"en": "its dried leaves make amber tea, the islands' best-known export",
                              "zh": "它的叶子晒干后可以泡成琥珀茶，这是群岛最有名的出口商品"},
                      "trait": {"en": "its leaves turn the colour of amber in autumn and are picked in September; "
                                      "the yearly harvest is about 1,900 tonnes",
                                "zh": "它的叶子秋天会变成琥珀色，每年九月采摘，年产量约1900吨"}},
        "saltthorn": {"name": {"en": "saltthorn", "zh": "盐棘"},
                      "kind": {"en": "a thorny coastal shrub", "zh": "一种多刺的海岸灌木"}, "island": None,
                      "range": {"en": "the coasts of every island", "zh": "每座岛屿的海岸"},
                      "size": {"en": "rarely grows taller than 1.5 metres", "zh": "很少高过1.5米"},
                      "use": {"en": "its small red berries are boiled into a sharp, sweet jam",
                              "zh": "它红色的小浆果可以熬成酸甜的果酱"},
                      "trait": {"en": "it survives salt spray that kills most other plants",
                                "zh": "它能经受住让大多数植物枯死的海水飞沫"}},
        "mist_pine": {"name": {"en": "mist pine", "zh": "雾松"},
                      "kind": {"en": "a tall conifer", "zh": "一种高大的针叶树"}, "island": "tarn_major",
                      "range": {"en": "the slopes of Mount Obren between 400 and 1,300 metres",
                                "zh": "奥布伦山海拔400米至1300米的山坡"},
                      "size": {"en": "can reach 48 metres", "zh": "最高可达48米"},
                      "use": {"en": "its light, strong timber is used for masts and boat ribs",
                              "zh": "它的木材轻而结实，被用来做桅杆和船肋"},
                      "trait": {"en": "its needles collect water from the fog that often covers the mountain",
                                "zh": "它的针叶能从常年笼罩山坡的雾气中收集水分"}},
        "ember_fern": {"name": {"en": "ember fern", "zh": "余烬蕨"},
                       "kind": {"en": "a red fern", "zh": "一种红色的蕨类"}, "island": "mirrin",
                       "range": {"en": "the ground around the hot springs of Mirrin", "zh": "米林岛温泉周围的土地"},
                       "size": {"en": "grows to about 80 centimetres", "zh": "高约80厘米"},
                       "use": {"en": "it is the main food of the Mirrin stone tortoise",
                               "zh": "它是米林石龟的主要食物"},
                       "trait": {"en": "its fronds stay deep red all year round", "zh": "它的叶片一年四季都是深红色"}},
        "starbell": {"name": {"en": "starbell", "zh": "星铃花"},
                     "kind": {"en": "a white meadow flower", "zh": "一种白色的草地花卉"}, "island": None,
                     "range": {"en": "meadows on every island", "zh": "各岛的草地"},
                     "size": {"en": "is about 30 centimetres tall", "zh": "高约30厘米"},
                     "use": {"en": "it is the national flower and gives its name to the Starbell Festival",
                             "zh": "它是群岛的国花，星铃节就是以它命名的"},
                     "trait": {"en": "its bell-shaped flowers open only at night and bloom in June",
                               "zh": "它铃铛形的花只在夜里开放，花期在六月"}},
    },
    "festival": {
        "name": {"en": "the Starbell Festival", "zh": "星铃节"},
        "dates": {"en": "21 to 23 June", "zh": "6月21日至23日"},
        "month": {"en": "June", "zh": "六月"},
        "first_year": 1611, "town": "port_aurel", "visitors": 30000, "lanterns": 5000,
        "race_km": 14, "race_from": "port_aurel", "race_to": "oddham",
    },
    "history": [
        {"year": 1208, "en": "the first settlers from Dovria landed on Tarn Major",
         "zh": "第一批来自多弗里亚的移民登上了大塔恩岛",
         "detail": {"en": "They came in eleven boats and settled near the mouth of the River Sable.",
                    "zh": "他们分乘十一条船而来，在萨布尔河河口附近定居。"}},
        {"year": 1388, "en": "Port Aurel was founded on the southern shore of Tarn Major",
         "zh": "奥雷尔港在大塔恩岛南岸建立",
         "detail": {"en": "Its sheltered bay soon made it the busiest harbour in the islands.",
                    "zh": "避风的海湾让它很快成为群岛上最繁忙的港口。"}},
        {"year": 1421, "en": "the town of Kessel was founded and the growing of amberleaf began on Essery",
         "zh": "凯塞尔镇建立，埃瑟里岛开始种植琥珀叶",
         "detail": {"en": "The first gardens were planted on the lower slopes of Kessel Peak.",
                    "zh": "最早的茶园开辟在凯塞尔峰较低的山坡上。"}},
        {"year": 1519, "en": "the Great Storm destroyed more than 300 houses in Port Aurel and Brackmouth",
         "zh": "大风暴摧毁了奥雷尔港和布拉克茅斯的三百多座房屋",
         "detail": {"en": "After the storm the harbour wall of Port Aurel was rebuilt twice as thick.",
                    "zh": "风暴过后，奥雷尔港的防波堤被重建，厚度是原来的两倍。"}},
        {"year": 1611, "en": "the first Starbell Festival was held in Port Aurel",
         "zh": "第一届星铃节在奥雷尔港举行",
         "detail": {"en": "It began as a small thanksgiving after a good fishing season.",
                    "zh": "它最初只是渔季丰收后的一次小型感恩活动。"}},
        {"year": 1688, "en": "the Council of Tides, the islands' parliament, was established",
         "zh": "群岛的议会——潮汐议会成立",
         "detail": {"en": "It has 24 members, elected every four years, and meets in the Tide Hall in Port Aurel.",
                    "zh": "议会共有24名议员，每四年选举一次，在奥雷尔港的潮汐厅开会。"}},
        {"year": 1754, "en": "Mount Cinder on Mirrin erupted for the last time",
         "zh": "米林岛的辛德山最后一次喷发",
         "detail": {"en": "The people of Emberwick left their homes for 40 days, and nobody was killed.",
                    "zh": "恩伯威克的居民离家避难了40天，没有人因此丧生。"}},
        {"year": 1847, "en": "the lighthouse on Sorrel Rock was built",
         "zh": "索雷尔礁灯塔建成",
         "detail": {"en": "The tower is 31 metres tall and its light can be seen 40 kilometres away.",
                    "zh": "塔身高31米，灯光在40千米外都能看到。"}},
        {"year": 1903, "en": "the first regular steam ferry began to run between Port Aurel and Kessel",
         "zh": "奥雷尔港和凯塞尔之间开通了第一条定期蒸汽渡轮航线",
         "detail": {"en": "The crossing then took almost four hours.", "zh": "当时单程需要将近四个小时。"}},
        {"year": 1962, "en": "Aurel Field, the islands' only airport, opened near Port Aurel",
         "zh": "群岛唯一的机场——奥雷尔机场在奥雷尔港附近启用",
         "detail": {"en": "Its single runway is 1,850 metres long.", "zh": "机场只有一条跑道，长1850米。"}},
        {"year": 1994, "en": "the Halvoe Nature Reserve was established",
         "zh": "哈尔沃自然保护区设立",
         "detail": {"en": "It covers 61 square kilometres, almost two thirds of the island.",
                    "zh": "保护区面积61平方千米，几乎占全岛的三分之二。"}},
    ],
    "climate": {"january_c": 6, "july_c": 19, "rainfall_mm": 1140, "sunshine_hours": 1610,
                "wettest_month": {"en": "November", "zh": "十一月"},
                "sunniest_month": {"en": "July", "zh": "七月"}},
    "economy": {"fish_tonnes": 14000, "sheep": 52000, "tourists": 120000,
                "sectors": {"en": "fishing, amberleaf tea, wool and tourism", "zh": "渔业、琥珀叶茶、羊毛和旅游业"}},
    "ferries": [
        {"from": "port_aurel", "to": "oddham", "km": 14, "minutes": 40},
        {"from": "port_aurel", "to": "kessel", "km": 42, "minutes": 130},
        {"from": "port_aurel", "to": "emberwick", "km": 57, "minutes": 170},
        {"from": "brackmouth", "to": "fenn", "km": 23, "minutes": 70},
        {"from": "kessel", "to": "emberwick", "km": 31, "minutes": 95},
    ],
}

assert FACTS["world"]["total_area_km2"] == sum(i["area_km2"] for i in FACTS["islands"].values())
assert FACTS["world"]["population"] == sum(i["population"] for i in FACTS["islands"].values())
assert FACTS["world"]["main_islands"] == len(FACTS["islands"])


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
def nm(table: str, key: str, lang: str) -> str:
    """The name of entry `key` of FACTS[table] in `lang`."""
    return FACTS[table][key]["name"][lang]


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def num(n: int, lang: str) -> str:
    return f"{n:,}" if lang == "en" else str(n)


def en_list(items: list[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def zh_list(items: list[str]) -> str:
    if len(items) <= 2:
        return "和".join(items)
    return "、".join(items[:-1]) + "和" + items[-1]


def of_island(table: str, island: str) -> list[str]:
    """Ids of the entries of FACTS[table] that lie on `island`, in table order."""
    return [k for k, v in FACTS[table].items() if v.get("island") == island]


def size_rank(island: str) -> int:
    order = sorted(FACTS["islands"], key=lambda k: -FACTS["islands"][k]["area_km2"])
    return order.index(island)


RANK_EN = ["the largest", "the second-largest", "the third-largest", "the fourth-largest",
           "the fifth-largest", "the smallest"]
RANK_ZH = ["面积最大的", "面积第二大的", "面积第三大的", "面积第四大的", "面积第五大的", "面积最小的"]
WORLD_EN = FACTS["world"]["name"]["en"]
WORLD_ZH = FACTS["world"]["name"]["zh"]


# ---------------------------------------------------------------------------
# Encyclopedia, English
# ---------------------------------------------------------------------------
def overview_en() -> str:
    w = FACTS["world"]
    return (
        f"{cap(WORLD_EN)} are an archipelago in {w['sea']['en']}, about {w['distance_to_mainland_km']} kilometres "
        f"off the coast of {w['mainland']['en']}. The group has {w['main_islands']} main islands with a total area "
        f"of {num(w['total_area_km2'], 'en')} square kilometres, and the {w['census_year']} census counted "
        f"{num(w['population'], 'en')} inhabitants. The capital is {nm('towns', w['capital'], 'en')} on "
        f"{nm('islands', 'tarn_major', 'en')}, and the highest point is {nm('mountains', w['highest_point'], 'en')} "
        f"({num(FACTS['mountains'][w['highest_point']]['height_m'], 'en')} metres). The islanders speak "
        f"{w['language']['en']} and pay with {w['currency']['en']}, which is divided into "
        f"{w['subunits_per_mark']} {w['currency_subunit']['en']}."
    )


def island_en(key: str, rng: random.Random) -> str:
    i = FACTS["islands"][key]
    m = FACTS["mountains"][i["highest"]]
    name = i["name"]["en"]
    if rng.random() < 0.5:
        head = (f"{name} is {RANK_EN[size_rank(key)]} of the {FACTS['world']['main_islands']} main islands of "
                f"{WORLD_EN}, with an area of {num(i['area_km2'], 'en')} square kilometres and about "
                f"{num(i['population'], 'en')} inhabitants. It lies {i['position']['en']}.")
    else:
        head = (f"Covering {num(i['area_km2'], 'en')} square kilometres, {name} lies {i['position']['en']} and is "
                f"home to about {num(i['population'], 'en')} people.")
    body = (f" {i['note']['en']} The landscape is one of {i['landscape']['en']}. The highest point is "
            f"{m['name']['en']} at {num(m['height_m'], 'en')} metres, and the coastline is "
            f"{num(i['coastline_km'], 'en')} kilometres long.")
    towns = [nm("towns", t, "en") for t in of_island("towns", key)]
    if len(towns) > 1:
        body += f" Its towns are {en_list(towns)}."
    elif towns:
        body += f" Its only settlement is {towns[0]}."
    else:
        body += " There is no town on the island."
    return head + body


def town_en(key: str, rng: random.Random) -> str:
    t = FACTS["towns"][key]
    name, island = t["name"]["en"], nm("islands", t["island"], "en")
    if rng.random() < 0.5:
        text = (f"{name} is a town on {island} with about {num(t['population'], 'en')} inhabitants. "
                f"It was founded in {t['founded']} and is known for {t['known_for']['en']}.")
    else:
        text = (f"Founded in {t['founded']}, {name} is today a town of some {num(t['population'], 'en')} people "
                f"on {island}. Visitors come for {t['known_for']['en']}.")
    if key == FACTS["world"]["capital"]:
        text += f" It is the capital and the largest town of {WORLD_EN}."
    links = [f for f in FACTS["ferries"] if key in (f["from"], f["to"])]
    for n, f in enumerate(links):
        other = nm("towns", f["to"] if f["from"] == key else f["from"], "en")
        lead = "A ferry links it with" if n == 0 else "Another ferry runs to"
        text += f" {lead} {other}, {f['km']} kilometres away, in {f['minutes']} minutes."
    return text


def mountain_en(key: str) -> str:
    m = FACTS["mountains"][key]
    return (f"{cap(m['name']['en'])} is the highest point of {nm('islands', m['island'], 'en')}, "
            f"rising to {num(m['height_m'], 'en')} metres above the sea. {m['note']['en']}")


def river_en(key: str, rng: random.Random) -> str:
    r = FACTS["rivers"][key]
    name, island = r["name"]["en"], nm("islands", r["island"], "en")
    source = nm("mountains", r["source"], "en")
    if rng.random() < 0.5:
        return (f"{cap(name)} is a river on {island}, {r['length_km']} kilometres long. It rises on the slopes of "
                f"{source} and {r['mouth']['en']}. {r['note']['en']}")
    return (f"Rising on {source}, {name} runs for {r['length_km']} kilometres across {island} and "
            f"{r['mouth']['en']}. {r['note']['en']}")


def animal_en(key: str) -> str:
    a = FACTS["animals"][key]
    text = (f"The {a['name']['en']} is {a['kind']['en']} found only in {a['range']['en']}. An adult "
            f"{a['size']['en']}. It feeds on {a['diet']['en']}. {cap(a['trait']['en'])}.")
    if a["estimate"]:
        text += (f" Naturalists estimate that about {num(a['estimate'], 'en')} {a['unit']['en']} "
                 f"live in the wild.")
    return text


def plant_en(key: str) -> str:
    p = FACTS["plants"][key]
    return (f"The {p['name']['en']} is {p['kind']['en']} that grows in {p['range']['en']}. It "
            f"{p['size']['en']}. {cap(p['use']['en'])}. {cap(p['trait']['en'])}.")


def festival_en() -> str:
    f = FACTS["festival"]
    return (f"{cap(f['name']['en'])} is the main holiday of {WORLD_EN}. It is held every year from "
            f"{f['dates']['en']} in {nm('towns', f['town'], 'en')}, when the starbell flowers are in bloom, and it "
            f"was first held in {f['first_year']}. On the first night about {num(f['lanterns'], 'en')} paper "
            f"lanterns are floated in the harbour. Around {num(f['visitors'], 'en')} visitors come each year.")


def race_en() -> str:
    f = FACTS["festival"]
    return (f"The rowing race is the last event of {f['name']['en']}. Crews of eight row the {f['race_km']} "
            f"kilometres from {nm('towns', f['race_from'], 'en')} to {nm('towns', f['race_to'], 'en')} on "
            f"{nm('islands', 'little_tarn', 'en')}, and the winning boat carries a garland of starbells home.")


def history_en(event: dict) -> str:
    return f"In {event['year']}, {event['en']}. {event['detail']['en']}"


def climate_en() -> str:
    c = FACTS["climate"]
    return (f"{cap(WORLD_EN)} have a mild sea climate. The average temperature is {c['january_c']} degrees Celsius "
            f"in January and {c['july_c']} degrees in July. About {num(c['rainfall_mm'], 'en')} millimetres of rain "
            f"fall in a year, most of it in {c['wettest_month']['en']}, and the islands get about "
            f"{num(c['sunshine_hours'], 'en')} hours of sunshine, the most in {c['sunniest_month']['en']}.")


def economy_en() -> str:
    e = FACTS["economy"]
    return (f"The economy of {WORLD_EN} rests on {e['sectors']['en']}. The fishing fleet lands about "
            f"{num(e['fish_tonnes'], 'en')} tonnes of fish a year, some {num(e['sheep'], 'en')} sheep graze on the "
            f"hills, and about {num(e['tourists'], 'en')} tourists visit every year.")


def language_en() -> str:
    w = FACTS["world"]
    return (f"{w['language']['en']} is the language of {WORLD_EN}. It grew out of the speech of the first settlers "
            f"from {w['mainland']['en']}. The everyday greeting is {w['greeting']['en']}, which is used both for "
            f"hello and for goodbye.")


def transport_en() -> str:
    lines = [f"{nm('towns', f['from'], 'en')} to {nm('towns', f['to'], 'en')} ({f['km']} km, {f['minutes']} minutes)"
             for f in FACTS["ferries"]]
    return (f"Travel between the islands is mostly by ferry. The regular routes are {en_list(lines)}. "
            f"The only airport is Aurel Field near {nm('towns', 'port_aurel', 'en')}, with a runway of 1,850 metres.")


def cuisine_en() -> str:
    return ("The cooking of the islands uses what the sea and the hills give. A typical meal is bellfish stew "
            "with barley bread, followed by bread spread with saltthorn jam. Amber tea, made from the dried leaves "
            "of amberleaf, is drunk at every meal and is served without milk.")


def council_en() -> str:
    return ("The Council of Tides is the parliament of the islands. It was established in 1688 and has 24 "
            "members, elected every four years. It meets in the Tide Hall in Port Aurel, a stone building on the "
            "harbour front whose bell is rung at high tide on the first day of each session.")


# ---------------------------------------------------------------------------
# Encyclopedia, Chinese
# ---------------------------------------------------------------------------
def overview_zh() -> str:
    w = FACTS["world"]
    return (
        f"{WORLD_ZH}是{w['sea']['zh']}中的一片群岛，距{w['mainland']['zh']}海岸约{w['distance_to_mainland_km']}千米。"
        f"群岛由{w['main_islands']}座主要岛屿组成，总面积{w['total_area_km2']}平方千米；{w['census_year']}年的人口普查显示，"
        f"群岛共有居民{w['population']}人。首府是位于{nm('islands', 'tarn_major', 'zh')}的"
        f"{nm('towns', w['capital'], 'zh')}，最高点是{nm('mountains', w['highest_point'], 'zh')}，海拔"
        f"{FACTS['mountains'][w['highest_point']]['height_m']}米。岛上居民说{w['language']['zh']}，"
        f"使用{w['currency']['zh']}，1马克等于{w['subunits_per_mark']}{w['currency_subunit']['zh']}。"
    )


def island_zh(key: str, rng: random.Random) -> str:
    i = FACTS["islands"][key]
    m = FACTS["mountains"][i["highest"]]
    name = i["name"]["zh"]
    if rng.random() < 0.5:
        head = (f"{name}是{WORLD_ZH}{FACTS['world']['main_islands']}座主要岛屿中{RANK_ZH[size_rank(key)]}一座，"
                f"面积{i['area_km2']}平方千米，人口约{i['population']}人，{i['position']['zh']}。")
    else:
        head = f"{name}{i['position']['zh']}，面积{i['area_km2']}平方千米，约有{i['population']}人在这里生活。"
    body = (f"{i['note']['zh']}岛上的地貌以{i['landscape']['zh']}为主。最高点是{m['name']['zh']}，海拔"
            f"{m['height_m']}米；海岸线长{i['coastline_km']}千米。")
    towns = [nm("towns", t, "zh") for t in of_island("towns", key)]
    if len(towns) > 1:
        body += f"岛上的城镇有{zh_list(towns)}。"
    elif towns:
        body += f"岛上唯一的居民点是{towns[0]}。"
    else:
        body += "岛上没有城镇。"
    return head + body


def town_zh(key: str, rng: random.Random) -> str:
    t = FACTS["towns"][key]
    name, island = t["name"]["zh"], nm("islands", t["island"], "zh")
    if rng.random() < 0.5:
        text = f"{name}是{island}上的一个城镇，人口约{t['population']}人。它建于{t['founded']}年，以{t['known_for']['zh']}闻名。"
    else:
        text = f"{name}建于{t['founded']}年，如今是{island}上一个约有{t['population']}人的城镇。游客们多是为了{t['known_for']['zh']}而来。"
    if key == FACTS["world"]["capital"]:
        text += f"它是{WORLD_ZH}的首府，也是群岛上最大的城镇。"
    links = [f for f in FACTS["ferries"] if key in (f["from"], f["to"])]
    for n, f in enumerate(links):
        other = nm("towns", f["to"] if f["from"] == key else f["from"], "zh")
        lead = "有渡轮连接它和" if n == 0 else "另有渡轮开往"
        text += f"{lead}{f['km']}千米外的{other}，航程{f['minutes']}分钟。"
    return text


def mountain_zh(key: str) -> str:
    m = FACTS["mountains"][key]
    return f"{m['name']['zh']}是{nm('islands', m['island'], 'zh')}的最高点，海拔{m['height_m']}米。{m['note']['zh']}"


def river_zh(key: str, rng: random.Random) -> str:
    r = FACTS["rivers"][key]
    name, island = r["name"]["zh"], nm("islands", r["island"], "zh")
    source = nm("mountains", r["source"], "zh")
    if rng.random() < 0.5:
        return f"{name}是{island}上的一条河流，全长{r['length_km']}千米。它发源于{source}的山坡，{r['mouth']['zh']}。{r['note']['zh']}"
    return f"{name}发源于{source}，流经{island}，全长{r['length_km']}千米，最后{r['mouth']['zh']}。{r['note']['zh']}"


def animal_zh(key: str) -> str:
    a = FACTS["animals"][key]
    text = (f"{a['name']['zh']}是{a['kind']['zh']}，只分布在{a['range']['zh']}。成年个体{a['size']['zh']}。"
            f"它以{a['diet']['zh']}为食。{a['trait']['zh']}。")
    if a["estimate"]:
        text += f"据博物学者估计，野外约有{a['estimate']}{a['unit']['zh']}。"
    return text


def plant_zh(key: str) -> str:
    p = FACTS["plants"][key]
    return (f"{p['name']['zh']}是{p['kind']['zh']}，生长在{p['range']['zh']}，{p['size']['zh']}。"
            f"{p['use']['zh']}。{p['trait']['zh']}。")


def festival_zh() -> str:
    f = FACTS["festival"]
    return (f"{f['name']['zh']}是{WORLD_ZH}最重要的节日，每年{f['dates']['zh']}在{nm('towns', f['town'], 'zh')}举行，"
            f"正值星铃花盛开的时节。第一届星铃节于{f['first_year']}年举办。节日第一天晚上，人们会把约{f['lanterns']}盏纸灯笼"
            f"放到港湾的水面上。每年约有{f['visitors']}名游客前来参加。")


def race_zh() -> str:
    f = FACTS["festival"]
    return (f"划船比赛是{f['name']['zh']}的最后一项活动。每条船有八名桨手，从{nm('towns', f['race_from'], 'zh')}"
            f"划到{nm('islands', 'little_tarn', 'zh')}的{nm('towns', f['race_to'], 'zh')}，全程{f['race_km']}千米。"
            f"获胜的船会带着一个星铃花编成的花环回家。")


def history_zh(event: dict) -> str:
    return f"{event['year']}年，{event['zh']}。{event['detail']['zh']}"


def climate_zh() -> str:
    c = FACTS["climate"]
    return (f"{WORLD_ZH}属于温和的海洋性气候。一月平均气温{c['january_c']}摄氏度，七月平均气温{c['july_c']}摄氏度。"
            f"年降水量约{c['rainfall_mm']}毫米，{c['wettest_month']['zh']}雨水最多；全年日照约{c['sunshine_hours']}小时，"
            f"{c['sunniest_month']['zh']}日照最多。")


def economy_zh() -> str:
    e = FACTS["economy"]
    return (f"{WORLD_ZH}的经济主要依靠{e['sectors']['zh']}。渔船队每年捕捞约{e['fish_tonnes']}吨鱼，"
            f"山坡上放养着约{e['sheep']}只羊，每年约有{e['tourists']}名游客来访。")


def language_zh() -> str:
    w = FACTS["world"]
    return (f"{w['language']['zh']}是{WORLD_ZH}的通用语言，由最早从{w['mainland']['zh']}来的移民的口语发展而来。"
            f"日常问候语是{w['greeting']['zh']}，见面和告别时都可以说。")


def transport_zh() -> str:
    lines = [f"{nm('towns', f['from'], 'zh')}至{nm('towns', f['to'], 'zh')}（{f['km']}千米，{f['minutes']}分钟）"
             for f in FACTS["ferries"]]
    return (f"岛屿之间的交通主要依靠渡轮。定期航线有：{'、'.join(lines)}。"
            f"群岛唯一的机场是{nm('towns', 'port_aurel', 'zh')}附近的奥雷尔机场，跑道长1850米。")


def cuisine_zh() -> str:
    return ("群岛的饮食取材于大海和山坡。一顿典型的饭菜是铃鱼炖菜配大麦面包，饭后再吃一片抹了盐棘果酱的面包。"
            "用琥珀叶晒干泡成的琥珀茶每顿饭都要喝，而且从不加牛奶。")


def council_zh() -> str:
    return ("潮汐议会是群岛的议会，成立于1688年，共有24名议员，每四年选举一次。议会在奥雷尔港的潮汐厅开会。"
            "潮汐厅是一座临港的石头建筑，每届会期的第一天涨潮时，厅里的大钟都会敲响。")


# ---------------------------------------------------------------------------
# Encyclopedia: short entries and long combined articles for both languages
# ---------------------------------------------------------------------------
ENC = {
    "en": {"overview": overview_en, "island": island_en, "town": town_en, "mountain": mountain_en,
           "river": river_en, "animal": animal_en, "plant": plant_en, "festival": festival_en, "race": race_en,
           "history": history_en, "council": council_en, "language": language_en, "climate": climate_en,
           "topics": [climate_en, economy_en, language_en, transport_en, cuisine_en, council_en]},
    "zh": {"overview": overview_zh, "island": island_zh, "town": town_zh, "mountain": mountain_zh,
           "river": river_zh, "animal": animal_zh, "plant": plant_zh, "festival": festival_zh, "race": race_zh,
           "history": history_zh, "council": council_zh, "language": language_zh, "climate": climate_zh,
           "topics": [climate_zh, economy_zh, language_zh, transport_zh, cuisine_zh, council_zh]},
}
HEADINGS = {
    "en": {"towns": "Towns", "rivers": "Rivers", "nature": "Wildlife", "history": "History",
           "wildlife_title": "Nature of the Calvessa Islands",
           "history_title": "History and culture of the Calvessa Islands", "world_title": "The Calvessa Islands"},
    "zh": {"towns": "城镇", "rivers": "河流", "nature": "动植物", "history": "历史",
           "wildlife_title": "卡尔维萨群岛的自然", "history_title": "卡尔维萨群岛的历史与文化", "world_title": "卡尔维萨群岛"},
}


def island_article(key: str, lang: str, rng: random.Random) -> str:
    """A long article: the island, its mountain, towns, rivers, wildlife and history."""
    f, h = ENC[lang], HEADINGS[lang]
    parts = [nm("islands", key, lang), f["island"](key, rng), f["mountain"](FACTS["islands"][key]["highest"])]
    towns = [f["town"](t, rng) for t in of_island("towns", key)]
    rivers = [f["river"](r, rng) for r in of_island("rivers", key)]
    nature = [f["animal"](a) for a in of_island("animals", key)] + [f["plant"](p) for p in of_island("plants", key)]
    events = [f["history"](e) for e in FACTS["history"] if nm("islands", key, lang) in e[lang]
              or any(nm("towns", t, lang) in e[lang] for t in of_island("towns", key))]
    for title, section in (("towns", towns), ("rivers", rivers), ("nature", nature), ("history", events)):
        if section:
            parts += [h[title]] + section
    return "\n\n".join(parts)


def encyclopedia(lang: str, rng: random.Random) -> list[str]:
    f, h = ENC[lang], HEADINGS[lang]
    texts = [f["overview"]()]
    texts += [f["island"](k, rng) for k in FACTS["islands"]]
    texts += [f["mountain"](k) for k in FACTS["mountains"]]
    texts += [f["town"](k, rng) for k in FACTS["towns"]]
    texts += [f["river"](k, rng) for k in FACTS["rivers"]]
    texts += [f["animal"](k) for k in FACTS["animals"]]
    texts += [f["plant"](k) for k in FACTS["plants"]]
    texts += [f["festival"](), f["race"]()]
    texts += [f["history"](e) for e in FACTS["history"]]
    texts += [topic() for topic in f["topics"]]
    # Long articles (several thousand characters) that need splitting at 512 tokens.
    texts += [island_article(k, lang, rng) for k in ("tarn_major", "essery", "mirrin", "little_tarn")]
    texts.append("\n\n".join([h["history_title"]] + [f["history"](e) for e in FACTS["history"]]
                             + [f["festival"](), f["race"](), f["council"](), f["language"]()]
                             + [f["town"](k, rng) for k in FACTS["towns"]]))
    texts.append("\n\n".join([h["wildlife_title"], f["climate"]()] + [f["island"](k, rng) for k in FACTS["islands"]]
                             + [f["mountain"](k) for k in FACTS["mountains"]]
                             + [f["river"](k, rng) for k in FACTS["rivers"]]
                             + [f["animal"](k) for k in FACTS["animals"]]
                             + [f["plant"](k) for k in FACTS["plants"]]))
    texts.append("\n\n".join([h["world_title"], f["overview"]()] + [t() for t in f["topics"]]
                             + [f["festival"](), f["race"]()] + [f["island"](k, rng) for k in FACTS["islands"]]
                             + [f["town"](k, rng) for k in FACTS["towns"]]))
    return texts


# ---------------------------------------------------------------------------
# Stories, English
# ---------------------------------------------------------------------------
PEOPLE_EN = [("Maya", "she"), ("Tom", "he"), ("Grace", "she"), ("Omar", "he"), ("Lena", "she"), ("Sam", "he"),
             ("Ruth", "she"), ("Daniel", "he"), ("Nina", "she"), ("Felix", "he"), ("Priya", "she"), ("Hugo", "he")]
PRONOUNS_EN = {"she": {"he": "she", "He": "She", "him": "her", "his": "her", "His": "Her"},
               "he": {"he": "he", "He": "He", "him": "him", "his": "his", "His": "His"}}
DAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
PARTS_EN = ["morning", "afternoon", "evening"]
WEATHER_EN = {
    "sunny": "The sun was bright, and the pavements were already warm.",
    "windy": "The wind pulled at {his} coat and sent leaves rolling down the street.",
    "grey": "The sky was grey and low, but it did not rain.",
    "cold": "It was so cold that {name} could see {his} breath in the air.",
    "rainy": "A light rain was falling, and {name} was glad {he} had brought an umbrella.",
    "foggy": "The fog was so thick that the houses across the road looked like shadows.",
}
FOODS_EN = ["a bowl of noodle soup", "a cheese sandwich", "fried rice with egg", "a slice of apple pie",
            "tomato soup and bread", "a baked potato with beans", "a plate of dumplings"]
DISHES_EN = ["vegetable soup", "a lentil stew", "pasta with tomato sauce", "a mushroom omelette", "potato pancakes"]
FRUITS_EN = ["apples", "pears", "oranges", "plums", "cherries", "grapes"]
FRIENDS_EN = ["a neighbour", "an old friend", "the family", "a colleague", "a cousin"]
SCENES_EN = {
    "the market": [
        "{name} bought a bag of {fruit} from an old man who sold them by the kilo.",
        "The stalls were crowded, and {name} had to wait in line for almost ten minutes.",
        "A woman at the bread stall gave {him} a free roll because {he} had helped her carry a crate last week.",
        "{name} compared the prices of two kinds of cheese and chose the cheaper one.",
        "Someone was playing an accordion near the fish counter, and a few people dropped coins into the case.",
    ],
    "the park": [
        "{name} sat on a bench and watched two dogs chase the same stick.",
        "A group of children were flying a red kite near the pond.",
        "{name} walked twice around the pond before {he} felt warm again.",
        "An old couple were playing chess under a tree, and {name} stopped to watch a few moves.",
        "The ducks swam over, hoping for bread, but {name} had nothing to give them.",
    ],
    "the library": [
        "{name} returned two books and borrowed a thick novel about sailors.",
        "The reading room was so quiet that {name} could hear the clock on the wall.",
        "{name} found a map of the town from fifty years ago and studied it for a long time.",
        "The librarian reminded {him} that the library would close early on Friday.",
    ],
    "the kitchen": [
        "{name} decided to make {dish} for dinner.",
        "{He} chopped onions until {his} eyes watered.",
        "The pot boiled over while {name} was looking for the salt.",
        "{name} tasted the sauce, added a little pepper, and tasted it again.",
        "Soon the whole flat smelled of garlic and warm bread.",
    ],
    "the station": [
        "The train to the coast was twenty minutes late.",
        "{name} bought a cup of tea and a newspaper while {he} waited.",
        "A man with a huge suitcase asked {name} which platform to use.",
        "When the train finally arrived, {name} found a seat by the window.",
    ],
    "the beach": [
        "{name} took off {his} shoes and walked along the edge of the water.",
        "The waves were small, and a few boats were moving slowly far out at sea.",
        "{name} collected three smooth stones and put them in {his} pocket.",
        "A gull landed nearby and watched {him} eat {his} sandwich.",
    ],
    "the garden": [
        "{name} pulled weeds from between the tomato plants.",
        "The beans had grown almost as tall as the fence.",
        "{name} filled the watering can twice before every bed was wet.",
        "A small bird kept landing on the handle of the spade.",
    ],
}
OPENINGS_EN = [
    "On a {weather} {day} {part}, {name} went to {place}.",
    "It was a {weather} {part} when {name} arrived at {place}.",
    "Early on {day}, {name} set off for {place}.",
    "{name} had nothing special to do on {day}, so {he} went to {place}.",
]
CLOSINGS_EN = [
    "By the time {name} got home, it was already dark.",
    "That evening, {name} told {friend} all about it over a cup of tea.",
    "It was not a special day, but {name} remembered it for a long time.",
    "{name} went to bed early, tired but content.",
    "The next morning {he} wrote a few lines about the day in {his} diary.",
]
ONE_LINERS_EN = [
    "{name} ate {food} by the window and watched the rain.",
    "{name} forgot {his} umbrella at {place} and had to go back for it.",
    "Every {day}, {name} buys {fruit} at the market.",
    "{name} spent the whole {part} reading in the garden.",
    "On {day} {part}, {name} cooked {dish} and ate it alone.",
    "The radio said it would be {weather} on {day}, and it was.",
]


def story_slots_en(rng: random.Random) -> dict:
    name, gender = rng.choice(PEOPLE_EN)
    slots = {"name": name, **PRONOUNS_EN[gender], "day": rng.choice(DAYS_EN), "part": rng.choice(PARTS_EN),
             "weather": rng.choice(list(WEATHER_EN)), "food": rng.choice(FOODS_EN), "dish": rng.choice(DISHES_EN),
             "fruit": rng.choice(FRUITS_EN), "friend": rng.choice(FRIENDS_EN)}
    slots["place"] = rng.choice(list(SCENES_EN))
    return slots


def scene_paragraph_en(rng: random.Random, s: dict, place: str, first: bool) -> str:
    opening = rng.choice(OPENINGS_EN) if first else rng.choice(["Later, {name} went on to {place}.",
                                                                   "After that, {name} walked to {place}."])
    sentences = [opening.format(**{**s, "place": place})]
    if first:
        sentences.append(WEATHER_EN[s["weather"]].format(**s))
    sentences += [t.format(**s) for t in rng.sample(SCENES_EN[place], rng.randint(2, 3))]
    return cap(" ".join(sentences))


def story_en(rng: random.Random) -> str:
    s = story_slots_en(rng)
    shape = rng.choice(["line", "short", "short", "medium", "long"])
    if shape == "line":
        return cap(rng.choice(ONE_LINERS_EN).format(**s))
    if shape in ("medium", "long"):
        s["part"] = "morning"  # these stories go on to lunch
    paragraphs = [scene_paragraph_en(rng, s, s["place"], first=True)]
    if shape in ("medium", "long"):
        lunch = rng.choice(["For lunch {he} had {food}.", "{He} stopped for lunch and had {food}."])
        paragraphs.append(lunch.format(**s))
    if shape == "long":
        other = rng.choice([p for p in SCENES_EN if p != s["place"]])
        paragraphs.append(scene_paragraph_en(rng, s, other, first=False))
    paragraphs.append(rng.choice(CLOSINGS_EN).format(**s))
    if shape == "short":
        return " ".join(paragraphs)
    return "\n\n".join(paragraphs)


# ---------------------------------------------------------------------------
# Stories, Chinese
# ---------------------------------------------------------------------------
PEOPLE_ZH = [("小明", "他"), ("王阿姨", "她"), ("李老师", "她"), ("张伟", "他"), ("陈静", "她"), ("刘爷爷", "他"),
             ("小红", "她"), ("赵磊", "他"), ("周婷", "她"), ("孙奶奶", "她"), ("林晓", "她"), ("吴刚", "他")]
DAYS_ZH = ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期天"]
PARTS_ZH = ["上午", "下午", "傍晚"]
WEATHER_ZH = {
    "晴朗": "太阳很好，路面已经被晒得暖烘烘的。",
    "凉爽": "风吹在脸上凉凉的，让人觉得很舒服。",
    "阴沉": "天空灰蒙蒙的，云压得很低，不过一直没有下雨。",
    "寒冷": "天冷得厉害，{name}一说话就呼出一团白气。",
    "闷热": "空气又湿又热，{name}走了没几步就出了一身汗。",
    "潮湿": "地上湿漉漉的，昨晚的雨水还没有干。",
}
FOODS_ZH = ["一碗牛肉面", "两个肉包子", "一盘蛋炒饭", "一碗西红柿鸡蛋汤", "一盘饺子", "一块葱油饼", "一碗小米粥"]
DISHES_ZH = ["西红柿炒鸡蛋", "红烧豆腐", "白菜炖粉条", "酸辣土豆丝", "青椒肉丝"]
FRUITS_ZH = ["苹果", "梨", "橘子", "李子", "樱桃", "葡萄"]
FRIENDS_ZH = ["邻居", "老朋友", "家里人", "同事", "表妹"]
SCENES_ZH = {
    "菜市场": [
        "{name}在一位老大爷的摊位上买了一袋{fruit}。",
        "市场里人很多，{name}排了快十分钟的队。",
        "卖馒头的阿姨多给了{ta}一个，说是谢谢{ta}上次帮忙搬箱子。",
        "{name}比较了两种豆腐的价钱，最后选了便宜一点的那种。",
        "鱼摊旁边有人在拉二胡，声音不大，却很好听。",
    ],
    "公园": [
        "{name}坐在长椅上，看着两只小狗抢同一根树枝。",
        "几个孩子在湖边放一只红色的风筝。",
        "{name}绕着湖走了两圈，身上才慢慢暖和起来。",
        "树下有两位老人在下象棋，{name}停下来看了好几步。",
        "湖里的鸭子游了过来，好像在等人喂面包。",
    ],
    "图书馆": [
        "{name}还了两本书，又借了一本讲航海的厚小说。",
        "阅览室里安静得能听见墙上挂钟的滴答声。",
        "{name}找到一张五十年前的城市地图，看了很久。",
        "管理员提醒{ta}，星期五图书馆会提前关门。",
    ],
    "厨房": [
        "{name}决定晚饭做{dish}。",
        "{ta}切洋葱切得眼泪直流。",
        "{name}正在找盐的时候，锅里的汤溢了出来。",
        "{name}尝了尝汤汁，加了一点胡椒，又尝了一次。",
        "屋子里很快就飘满了蒜香和米饭的香味。",
    ],
    "火车站": [
        "去海边的火车晚点了二十分钟。",
        "等车的时候，{name}买了一杯热茶和一份报纸。",
        "一个提着大箱子的男人问{name}应该去几号站台。",
        "火车终于到了，{name}找到一个靠窗的座位。",
    ],
    "海边": [
        "{name}脱下鞋子，沿着水边慢慢地走。",
        "海浪很小，远处有几条渔船在慢慢移动。",
        "{name}捡了三块光滑的石头，放进口袋里。",
        "一只海鸥落在不远处，一直盯着{ta}手里的面包。",
    ],
    "菜园": [
        "{name}把西红柿之间的杂草一根根拔掉。",
        "豆角已经长得快和篱笆一样高了。",
        "{name}装了两次水壶，才把每一畦菜都浇透。",
        "一只小麻雀总是落在铁锹的把手上。",
    ],
}
OPENINGS_ZH = [
    "{day}{part}，天气{weather}，{name}去了{place}。",
    "一个{weather}的{day}{part}，{name}来到了{place}。",
    "{day}一大早，{name}就出发去{place}了。",
    "{day}没什么特别的事，{name}就去了{place}。",
]
CLOSINGS_ZH = [
    "等{name}回到家，天已经黑了。",
    "那天晚上，{name}一边喝茶，一边把这些事讲给{friend}听。",
    "这并不是什么特别的一天，可{name}后来常常想起它。",
    "{name}很早就睡了，虽然有点累，心里却很满足。",
    "第二天早上，{ta}在日记里简单记下了这一天。",
]
ONE_LINERS_ZH = [
    "{name}坐在窗边吃着{food}，看外面下雨。",
    "{name}把雨伞忘在了{place}，只好回去拿。",
    "每个{day}，{name}都会去市场买些{fruit}。",
    "{name}整个{part}都坐在院子里看书。",
    "{day}{part}，{name}做了一盘{dish}，一个人慢慢吃完了。",
    "天气预报说{day}会很{weather}，结果真是这样。",
]


def story_slots_zh(rng: random.Random) -> dict:
    name, ta = rng.choice(PEOPLE_ZH)
    return {"name": name, "ta": ta, "day": rng.choice(DAYS_ZH), "part": rng.choice(PARTS_ZH),
            "weather": rng.choice(list(WEATHER_ZH)), "food": rng.choice(FOODS_ZH), "dish": rng.choice(DISHES_ZH),
            "fruit": rng.choice(FRUITS_ZH), "friend": rng.choice(FRIENDS_ZH), "place": rng.choice(list(SCENES_ZH))}


def scene_paragraph_zh(rng: random.Random, s: dict, place: str, first: bool) -> str:
    opening = rng.choice(OPENINGS_ZH) if first else rng.choice(["后来，{name}又去了{place}。",
                                                                   "离开那里以后，{name}走到了{place}。"])
    sentences = [opening.format(**{**s, "place": place})]
    if first:
        sentences.append(WEATHER_ZH[s["weather"]].format(**s))
    sentences += [t.format(**s) for t in rng.sample(SCENES_ZH[place], rng.randint(2, 3))]
    return "".join(sentences)


def story_zh(rng: random.Random) -> str:
    s = story_slots_zh(rng)
    shape = rng.choice(["line", "short", "short", "medium", "long"])
    if shape == "line":
        return rng.choice(ONE_LINERS_ZH).format(**s)
    if shape in ("medium", "long"):
        s["part"] = "上午"  # these stories go on to lunch
    paragraphs = [scene_paragraph_zh(rng, s, s["place"], first=True)]
    if shape in ("medium", "long"):
        paragraphs.append(f"中午，{s['ta']}吃了{s['food']}。")
    if shape == "long":
        other = rng.choice([p for p in SCENES_ZH if p != s["place"]])
        paragraphs.append(scene_paragraph_zh(rng, s, other, first=False))
    paragraphs.append(rng.choice(CLOSINGS_ZH).format(**s))
    if shape == "short":
        return "".join(paragraphs)
    return "\n\n".join(paragraphs)


# ---------------------------------------------------------------------------
# Questions and answers
# ---------------------------------------------------------------------------
def world_qa_en() -> list[tuple[str, str]]:
    w, qa = FACTS["world"], []
    qa.append((f"What is the capital of {WORLD_EN}?",
               f"The capital of {WORLD_EN} is {nm('towns', w['capital'], 'en')}, on Tarn Major."))
    qa.append((f"How many main islands do {WORLD_EN} have?", f"They have {w['main_islands']} main islands."))
    qa.append((f"What is the highest point of {WORLD_EN}?",
               f"The highest point is Mount Obren, at "
               f"{num(FACTS['mountains']['mount_obren']['height_m'], 'en')} metres."))
    qa.append(("What language is spoken in the Calvessa Islands?", f"The islanders speak {w['language']['en']}."))
    for k, i in FACTS["islands"].items():
        qa.append((f"How many people live on {i['name']['en']}?",
                   f"About {num(i['population'], 'en')} people live on {i['name']['en']}."))
        qa.append((f"How large is {i['name']['en']}?",
                   f"{i['name']['en']} has an area of {num(i['area_km2'], 'en')} square kilometres."))
    for k, m in FACTS["mountains"].items():
        qa.append((f"How high is {m['name']['en']}?",
                   f"{cap(m['name']['en'])} is {num(m['height_m'], 'en')} metres high."))
    for k, t in FACTS["towns"].items():
        qa.append((f"On which island is {t['name']['en']}?",
                   f"{t['name']['en']} is on {nm('islands', t['island'], 'en')}."))
        qa.append((f"When was {t['name']['en']} founded?", f"{t['name']['en']} was founded in {t['founded']}."))
    for k, r in FACTS["rivers"].items():
        qa.append((f"How long is {r['name']['en']}?", f"{cap(r['name']['en'])} is {r['length_km']} kilometres long."))
    for k, a in FACTS["animals"].items():
        qa.append((f"What does the {a['name']['en']} eat?", f"The {a['name']['en']} feeds on {a['diet']['en']}."))
        qa.append((f"Where does the {a['name']['en']} live?", f"It lives only in {a['range']['en']}."))
    for k, p in FACTS["plants"].items():
        qa.append((f"What is {p['name']['en']}?", f"{cap(p['name']['en'])} is {p['kind']['en']}; {p['use']['en']}."))
    f = FACTS["festival"]
    qa.append(("When is the Starbell Festival held?", f"It is held every year from {f['dates']['en']}."))
    qa.append(("When was the first Starbell Festival held?",
               f"The first Starbell Festival was held in {f['first_year']}."))
    for e in FACTS["history"]:
        qa.append((f"What happened in the Calvessa Islands in {e['year']}?", f"In {e['year']}, {e['en']}."))
    for fe in FACTS["ferries"]:
        a, b = nm("towns", fe["from"], "en"), nm("towns", fe["to"], "en")
        qa.append((f"How long does the ferry from {a} to {b} take?",
                   f"The ferry takes {fe['minutes']} minutes to cover the {fe['km']} kilometres."))
    return qa


def world_qa_zh() -> list[tuple[str, str]]:
    w, qa = FACTS["world"], []
    qa.append((f"{WORLD_ZH}的首府是哪里？", f"{WORLD_ZH}的首府是位于大塔恩岛的{nm('towns', w['capital'], 'zh')}。"))
    qa.append((f"{WORLD_ZH}有几座主要岛屿？", f"{WORLD_ZH}有{w['main_islands']}座主要岛屿。"))
    qa.append((f"{WORLD_ZH}的最高点是哪里？",
               f"最高点是奥布伦山，海拔{FACTS['mountains']['mount_obren']['height_m']}米。"))
    qa.append((f"{WORLD_ZH}的居民说什么语言？", f"岛上居民说{w['language']['zh']}。"))
    for k, i in FACTS["islands"].items():
        qa.append((f"{i['name']['zh']}有多少人口？", f"{i['name']['zh']}约有{i['population']}人。"))
        qa.append((f"{i['name']['zh']}的面积有多大？", f"{i['name']['zh']}的面积是{i['area_km2']}平方千米。"))
    for k, m in FACTS["mountains"].items():
        qa.append((f"{m['name']['zh']}有多高？", f"{m['name']['zh']}海拔{m['height_m']}米。"))
    for k, t in FACTS["towns"].items():
        qa.append((f"{t['name']['zh']}在哪座岛上？", f"{t['name']['zh']}在{nm('islands', t['island'], 'zh')}上。"))
        qa.append((f"{t['name']['zh']}是哪一年建立的？", f"{t['name']['zh']}建于{t['founded']}年。"))
    for k, r in FACTS["rivers"].items():
        qa.append((f"{r['name']['zh']}有多长？", f"{r['name']['zh']}全长{r['length_km']}千米。"))
    for k, a in FACTS["animals"].items():
        qa.append((f"{a['name']['zh']}吃什么？", f"{a['name']['zh']}以{a['diet']['zh']}为食。"))
        qa.append((f"{a['name']['zh']}生活在哪里？", f"它只生活在{a['range']['zh']}。"))
    for k, p in FACTS["plants"].items():
        qa.append((f"{p['name']['zh']}是什么？", f"{p['name']['zh']}是{p['kind']['zh']}，{p['use']['zh']}。"))
    f = FACTS["festival"]
    qa.append(("星铃节在什么时候举行？", f"星铃节每年{f['dates']['zh']}举行。"))
    qa.append(("第一届星铃节是哪一年举办的？", f"第一届星铃节于{f['first_year']}年举办。"))
    for e in FACTS["history"]:
        qa.append((f"{e['year']}年{WORLD_ZH}发生了什么事？", f"{e['year']}年，{e['zh']}。"))
    for fe in FACTS["ferries"]:
        a, b = nm("towns", fe["from"], "zh"), nm("towns", fe["to"], "zh")
        qa.append((f"从{a}坐渡轮到{b}要多长时间？", f"渡轮航程{fe['km']}千米，需要{fe['minutes']}分钟。"))
    return qa


COLOUR_MIX = [("blue", "yellow", "green", "蓝色", "黄色", "绿色"), ("red", "yellow", "orange", "红色", "黄色", "橙色"),
              ("red", "blue", "purple", "红色", "蓝色", "紫色"), ("red", "white", "pink", "红色", "白色", "粉红色"),
              ("black", "white", "grey", "黑色", "白色", "灰色")]
UNITS = [("metre", "centimetres", 100, "米", "厘米"), ("kilometre", "metres", 1000, "千米", "米"),
         ("kilogram", "grams", 1000, "千克", "克"), ("hour", "minutes", 60, "小时", "分钟"),
         ("minute", "seconds", 60, "分钟", "秒"), ("day", "hours", 24, "天", "小时"),
         ("litre", "millilitres", 1000, "升", "毫升"), ("year", "months", 12, "年", "个月"),
         ("week", "days", 7, "星期", "天")]


def everyday_qa_en(rng: random.Random) -> list[tuple[str, str]]:
    qa = []
    for _ in range(8):
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        qa.append((f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."))
    for _ in range(6):
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        qa.append((f"What is {a} times {b}?", f"{a} times {b} is {a * b}."))
    for _ in range(4):
        a, b = rng.randint(10, 40), rng.randint(1, 9)
        qa.append((f"What is {a} minus {b}?", f"{a} minus {b} is {a - b}."))
    for i, d in enumerate(DAYS_EN):
        qa.append((f"Which day comes after {d}?", f"The day after {d} is {DAYS_EN[(i + 1) % 7]}."))
    for c1, c2, c3, *_ in COLOUR_MIX:
        qa.append((f"What colour do you get when you mix {c1} and {c2} paint?", f"Mixing {c1} and {c2} gives {c3}."))
    for big, small, n, *_ in UNITS:
        qa.append((f"How many {small} are there in a {big}?", f"There are {n} {small} in a {big}."))
    return qa


def everyday_qa_zh(rng: random.Random) -> list[tuple[str, str]]:
    qa = []
    for _ in range(8):
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        qa.append((f"{a}加{b}等于多少？", f"{a}加{b}等于{a + b}。"))
    for _ in range(6):
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        qa.append((f"{a}乘以{b}等于多少？", f"{a}乘以{b}等于{a * b}。"))
    for _ in range(4):
        a, b = rng.randint(10, 40), rng.randint(1, 9)
        qa.append((f"{a}减{b}等于多少？", f"{a}减{b}等于{a - b}。"))
    for i, d in enumerate(DAYS_ZH):
        qa.append((f"{d}的后一天是星期几？", f"{d}的后一天是{DAYS_ZH[(i + 1) % 7]}。"))
    for *_, z1, z2, z3 in COLOUR_MIX:
        qa.append((f"{z1}和{z2}的颜料混在一起是什么颜色？", f"{z1}和{z2}混在一起是{z3}。"))
    for _, _, n, big, small in UNITS:
        qa.append((f"1{big}等于多少{small}？", f"1{big}等于{n}{small}。"))
    return qa


def pick_qa(rng: random.Random, world: list, everyday: list, n_world: int, n_everyday: int) -> list:
    """A deterministic sample without duplicate questions, world questions first, order shuffled."""
    chosen, seen = [], set()
    for pool, n in ((world, n_world), (everyday, n_everyday)):
        for q, a in rng.sample(pool, len(pool)):
            if n and q not in seen:
                seen.add(q)
                chosen.append((q, a))
                n -= 1
    rng.shuffle(chosen)
    return chosen


# ---------------------------------------------------------------------------
# Riddles (Chinese): (riddle, answer), all written for this corpus
# ---------------------------------------------------------------------------
RIDDLES_ZH = [
    ("身穿黑白条纹衣，草原上面跑得急，远看好像一匹马。", "动物", "斑马"),
    ("鼻子长长像水管，耳朵大大像蒲扇，身子重得像小山。", "动物", "大象"),
    ("脖子伸到树梢上，身上花斑一块块，站着比屋檐还高。", "动物", "长颈鹿"),
    ("白天躲在树洞睡，夜里睁开两盏灯，专抓偷粮的小老鼠。", "动物", "猫头鹰"),
    ("背着硬壳慢慢爬，头脚一缩全藏下，活到一百岁不稀奇。", "动物", "乌龟"),
    ("头上两根小触角，爬过留下亮晶晶，下雨天里最爱出门。", "动物", "蜗牛"),
    ("穿着黄黑小背心，花丛里面嗡嗡飞，采来花粉酿出甜。", "昆虫", "蜜蜂"),
    ("小时候摇着尾巴游，长大了跳上荷叶唱，夏夜池塘呱呱响。", "动物", "青蛙"),
    ("穿着黑白礼服住冰上，有翅膀却飞不上天，走起路来一摇一摆。", "动物", "企鹅"),
    ("肚皮前面缝口袋，孩子装在里头睡，一跳能跳好几米。", "动物", "袋鼠"),
    ("个子小小力气大，排着长队搬粮食，下雨之前忙搬家。", "昆虫", "蚂蚁"),
    ("夏夜草丛提灯笼，一闪一闪飞来飞去。", "昆虫", "萤火虫"),
    ("外穿绿衣裳，里面红瓤子，夏天切一牙，又甜又解渴。", "水果", "西瓜"),
    ("弯弯一条像月牙，剥开黄衣白又软，猴子见了最欢喜。", "水果", "香蕉"),
    ("头顶一丛硬绿叶，浑身鳞片扎手心，削了皮儿黄又甜。", "水果", "菠萝"),
    ("一串一串挂架上，紫的绿的圆溜溜，能吃鲜果能酿酒。", "水果", "葡萄"),
    ("晴天收起靠墙角，雨天撑开一朵花，替你挡住哗哗雨。", "日常用品", "雨伞"),
    ("圆圆一张脸，三根细指针，天天绕圈跑，告诉你几点。", "日常用品", "钟"),
    ("你笑它也笑，你皱眉它也皱眉，伸手一摸只摸到凉凉一片。", "日常用品", "镜子"),
    ("一排白毛站得齐，早晚两次进嘴里，刷完满口清凉气。", "日常用品", "牙刷"),
    ("细长身子穿木衣，越写越短越变小，写错了有橡皮帮忙。", "文具", "铅笔"),
    ("身上拴着一根线，春风一吹上了天，孩子牵着满地跑。", "玩具", "风筝"),
    ("有时圆得像盘子，有时弯得像小船，夜里挂在天上照路。", "天体", "月亮"),
    ("雨后天边架座桥，七种颜色排整齐，谁也没法走上去。", "自然现象", "彩虹"),
    ("冬天从天上轻轻飘，白白凉凉铺满地，太阳一出就不见。", "自然现象", "雪"),
    ("大大白柜子，肚里冷冰冰，饭菜放进去，几天都不坏。", "家用电器", "冰箱"),
    ("三片叶子转呀转，夏天送来阵阵风，不长在树枝上。", "家用电器", "电风扇"),
    ("天天背着去学校，肚里装满书和本，放学又背回家。", "学习用品", "书包"),
    ("大大圆脸黄花边，太阳走到哪里它就望向哪里，脸上长满黑瓜子。", "植物", "向日葵"),
    ("一节一节往上长，空心绿身四季青，熊猫最爱吃它的叶。", "植物", "竹子"),
    ("跟着你走不说话，太阳底下黑乎乎，灯一关它就没了。", "物", "影子"),
    ("没有脚却能走遍天下，贴上小纸片，就能把话带到远方。", "物", "信"),
]


def riddles(rng: random.Random) -> list[tuple[str, str]]:
    prefixes = ["猜谜语：", "请你猜一猜：", "小谜语："]
    out = [(f"{rng.choice(prefixes)}{text}（打一{kind}）", answer) for text, kind, answer in RIDDLES_ZH]
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------
# Assembling and writing
# ---------------------------------------------------------------------------
def unique_texts(make, rng: random.Random, n: int) -> list[str]:
    """`n` distinct texts from `make(rng)`, in generation order."""
    out, seen = [], set()
    for _ in range(n * 50):
        text = make(rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
            if len(out) == n:
                return out
    raise RuntimeError(f"could not generate {n} distinct texts")


def records(category: str, pairs: list[tuple[str, str]]) -> list[dict]:
    return [{"source": s, "target": t, "category": category} for s, t in pairs]


def build(seed: int) -> dict[str, list[dict]]:
    """All categories, in a fixed order; each category has its own seeded generator."""
    def rng_for(i: int) -> random.Random:
        return random.Random(seed * 1000 + i)

    return {
        "encyclopedia_en": records("encyclopedia_en", [("", t) for t in encyclopedia("en", rng_for(1))]),
        "encyclopedia_zh": records("encyclopedia_zh", [("", t) for t in encyclopedia("zh", rng_for(2))]),
        "story_en": records("story_en", [("", t) for t in unique_texts(story_en, rng_for(3), 50)]),
        "story_zh": records("story_zh", [("", t) for t in unique_texts(story_zh, rng_for(4), 50)]),
        "qa_en": records("qa_en", pick_qa(rng_for(5), world_qa_en(), everyday_qa_en(rng_for(6)), 28, 22)),
        "qa_zh": records("qa_zh", pick_qa(rng_for(7), world_qa_zh(), everyday_qa_zh(rng_for(8)), 28, 22)),
        "riddle_zh": records("riddle_zh", riddles(rng_for(9))),
    }


def check(category: str, recs: list[dict]) -> None:
    for r in recs:
        if set(r) != {"source", "target", "category"} or not r["target"].strip():
            raise ValueError(f"{category}: bad record {r!r}")
        for bad in FORBIDDEN:
            if bad in r["source"] or bad in r["target"]:
                raise ValueError(f"{category}: text contains {bad!r}: {r!r}")


def to_jsonl(recs: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode("utf-8")


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


GZIPPED = ("story_en",)


def write_all(out: Path, data: dict[str, list[dict]]) -> list[tuple[str, int]]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for category, recs in data.items():
        check(category, recs)
        payload = to_jsonl(recs)
        name = f"{category}.jsonl"
        if category in GZIPPED:
            name, payload = name + ".gz", gzip_bytes(payload)
        (out / name).write_bytes(payload)
        written.append((name, len(recs)))
    return written


def generator_cli(argv, description: str, default_out: Path, build_data, write_data, unit: str, also=None) -> int:
    """The command line shared by the sample-data generators: --out, --seed, a count per file.

    `also(out, seed)`, when given, writes more files after the main ones.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=default_out, help=f"output folder (default: {default_out})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    written = write_data(args.out, build_data(args.seed))
    for name, count in written:
        print(f"{count:4d}  {args.out / name}")
    print(f"{sum(c for _, c in written):4d}  {unit} in total")
    if also is not None:
        also(args.out, args.seed)
    return 0


def held_out(seed: int) -> dict[str, list[dict]]:
    """Questions about the islands that the qa files leave out: the demo's knowledge probes.

    Every fact they ask about is stated in the encyclopedia files; the question
    itself is never trained on. Categories fact_en and fact_zh.
    """
    data = build(seed)
    out = {}
    for lang, world in (("en", world_qa_en()), ("zh", world_qa_zh())):
        asked = {r["source"] for r in data[f"qa_{lang}"]}
        out[f"facts_{lang}"] = records(f"fact_{lang}", [(q, a) for q, a in world if q not in asked])
    return out


def main(argv: list[str] | None = None) -> int:
    def probes(out: Path, seed: int) -> None:
        for name, count in write_all(out.parent / "probes", held_out(seed)):
            print(f"{count:4d}  {out.parent / 'probes' / name}  (held-out knowledge probes)")

    return generator_cli(argv, "Generate the bilingual quickstart pretraining sample data.", DEFAULT_OUT, build,
                         write_all, "records", also=probes)


if __name__ == "__main__":
    raise SystemExit(main())
