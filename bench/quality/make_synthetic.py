# ruff: noqa: E501  (hand-written dialogue lines are kept whole)
"""Writes synthetic_locomo.json: a small, hand-written benchmark in the LoCoMo format.

    .venv/bin/python -m bench.quality.make_synthetic

Four conversations between two people (three in English, one mostly in Chinese), four
dated sessions each. The events and questions below were written by hand, as a person
would chat and ask, before the retrieval method was tuned; the generator only pads each
session with small talk (a seeded shuffle of the filler pool, so the file is
deterministic), numbers the turns ``D<session>:<n>`` and resolves evidence tags to those
ids. Categories follow LoCoMo: 1 multi-hop, 2 temporal, 3 open-domain / inference,
4 single-hop, 5 adversarial (``adversarial_answer`` instead of ``answer``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "synthetic_locomo.json"

# A block is a list of turns: (speaker "A"/"B", text) or (speaker, text, evidence tag).
# A session is a list of blocks; fillers are inserted between blocks.

CONVERSATIONS = [
    {
        "id": "anna-ben",
        "lang": "en",
        "a": "Anna",
        "b": "Ben",
        "dates": [
            "2:15 pm on 3 March, 2023",
            "7:40 pm on 21 April, 2023",
            "10:05 am on 2 July, 2023",
            "6:30 pm on 15 October, 2023",
        ],
        "sessions": [
            [
                [
                    (
                        "A",
                        "Big news on my side: we adopted a puppy from the shelter last weekend!",
                        "dog_adopt",
                    ),
                    ("B", "No way! What breed is it?"),
                    (
                        "A",
                        "She's a beagle mix, about four months old. We named her Biscuit.",
                        "dog_name",
                    ),
                    ("B", "Biscuit is adorable. Send me pictures!"),
                ],
                [
                    (
                        "A",
                        "I also signed up for the Lisbon marathon in October, so training starts now.",
                        "marathon_signup",
                    ),
                    ("B", "That's ambitious. How far are you running right now?"),
                    (
                        "A",
                        "About 25 kilometres a week, mostly along the river before school starts.",
                        "run_distance",
                    ),
                ],
                [
                    (
                        "B",
                        "I started taking guitar lessons on Thursdays. My teacher is a retired jazz musician.",
                        "guitar_start",
                    ),
                    ("A", "That sounds fun! What are you learning first?"),
                    (
                        "B",
                        "Mostly chords, and a simple version of Blackbird by the Beatles.",
                        "guitar_song",
                    ),
                ],
                [
                    ("A", "How is the big project at work going?"),
                    (
                        "B",
                        "Stressful. We ship the new payments app at the end of the month.",
                        "launch",
                    ),
                ],
            ],
            [
                [
                    (
                        "A",
                        "Biscuit chewed through my favourite running shoes yesterday, so I had to buy new ones.",
                        "shoes",
                    ),
                    ("B", "Ha, classic puppy. Which ones did you get?"),
                    ("A", "Another pair of blue Asics, same model as before."),
                ],
                [
                    (
                        "B",
                        "I have some news too: I'm moving to a new apartment in Rotterdam next month.",
                        "move",
                    ),
                    ("A", "Exciting! Why Rotterdam?"),
                    (
                        "B",
                        "It's closer to the office, and my partner Mia found a job at the port there.",
                        "mia_job",
                    ),
                ],
                [
                    (
                        "A",
                        "My class is putting on a play about the water cycle. The kids are making costumes from recycled bottles.",
                        "play",
                    ),
                    ("B", "You must be a patient teacher."),
                    ("A", "Third graders keep you humble, that's for sure.", "third_grade"),
                ],
                [
                    (
                        "B",
                        "The payments app went live, by the way. Two days late, but the reviews are good.",
                        "launched",
                    ),
                    ("A", "Congrats, you earned a holiday."),
                ],
                [
                    (
                        "A",
                        "Half marathon in Utrecht this Sunday as a test run. Wish me luck!",
                        "utrecht_plan",
                    ),
                    ("B", "Good luck, you'll crush it."),
                ],
            ],
            [
                [
                    (
                        "A",
                        "I ran the Utrecht half marathon in 1 hour 52 minutes. Way better than I expected.",
                        "utrecht_time",
                    ),
                    ("B", "Congrats! Did Biscuit come to cheer?"),
                    (
                        "A",
                        "She did, with my sister Clara, who held a sign that said 'Run faster, the dog is watching'.",
                        "clara",
                    ),
                ],
                [
                    (
                        "B",
                        "We finally moved into the Rotterdam place two weeks ago. The view of the harbour is amazing.",
                        "moved_done",
                    ),
                    ("A", "Do you have space for guests?"),
                    ("B", "A tiny guest room, so yes, come visit anytime."),
                ],
                [
                    (
                        "B",
                        "I played Blackbird at an open mic night last Friday. My hands were shaking the whole time.",
                        "openmic",
                    ),
                    ("A", "I'm so proud of you! How did people react?"),
                    ("B", "They clapped politely and one person asked for my teacher's number."),
                ],
                [
                    (
                        "A",
                        "Clara is getting married in September in Porto, and I'm the maid of honour.",
                        "wedding",
                    ),
                    ("B", "Wow, two trips to Portugal this year then."),
                    (
                        "A",
                        "Yes, Porto in September and Lisbon for the race in October.",
                        "portugal_trips",
                    ),
                ],
            ],
            [
                [
                    (
                        "A",
                        "I finished the Lisbon marathon on Sunday! 4 hours and 8 minutes, and my knees are still angry.",
                        "marathon_done",
                    ),
                    ("B", "Incredible. Was it hot?"),
                    ("A", "Surprisingly cool, it drizzled for the first hour."),
                ],
                [
                    (
                        "A",
                        "The wedding in Porto was beautiful. I gave a speech and cried halfway through.",
                        "speech",
                    ),
                    ("B", "Everyone cries at weddings, don't worry."),
                ],
                [
                    (
                        "B",
                        "Mia and I adopted a cat last week, a grey rescue called Pixel. Biscuit would probably chase him.",
                        "pixel",
                    ),
                    ("A", "Pixel! Great name for a programmer's cat."),
                ],
                [
                    (
                        "B",
                        "I'm thinking of leaving my job. A startup in Amsterdam offered me a lead engineer role.",
                        "offer",
                    ),
                    ("A", "Would you commute from Rotterdam?"),
                    ("B", "Two days a week on the train, the rest remote.", "commute"),
                ],
                [
                    (
                        "A",
                        "Biscuit passed her obedience class, she can finally sit and stay.",
                        "obedience",
                    ),
                    ("B", "Good girl!"),
                ],
            ],
        ],
        "qa": [
            (4, "What is the name of Anna's dog?", "Biscuit", ["dog_name"]),
            (
                4,
                "What song did Ben learn on the guitar?",
                "Blackbird by the Beatles",
                ["guitar_song"],
            ),
            (4, "What grade does Anna teach?", "Third grade", ["third_grade"]),
            (
                4,
                "Why did Ben move to Rotterdam?",
                "It is closer to his office and his partner Mia found a job at the port",
                ["mia_job"],
            ),
            (4, "What is Ben's cat called?", "Pixel", ["pixel"]),
            (4, "What job was Ben offered?", "Lead engineer at a startup in Amsterdam", ["offer"]),
            (2, "When did Anna adopt her puppy?", "The weekend before 3 March 2023", ["dog_adopt"]),
            (2, "When did Biscuit chew Anna's running shoes?", "20 April 2023", ["shoes"]),
            (
                2,
                "When did Ben perform at the open mic night?",
                "The Friday before 2 July 2023 (30 June 2023)",
                ["openmic"],
            ),
            (
                2,
                "When did Ben move into his new apartment?",
                "Mid June 2023, two weeks before 2 July 2023",
                ["moved_done"],
            ),
            (
                2,
                "When did Ben and Mia get their cat?",
                "The week before 15 October 2023",
                ["pixel"],
            ),
            (
                1,
                "Which cities in Portugal did Anna visit in 2023?",
                "Porto for her sister's wedding and Lisbon for the marathon",
                ["portugal_trips", "marathon_done", "speech"],
            ),
            (
                1,
                "How did Anna's time in the half marathon compare with her full marathon time?",
                "1 hour 52 minutes for the half, 4 hours 8 minutes for the full marathon",
                ["utrecht_time", "marathon_done"],
            ),
            (
                1,
                "How did the launch of Ben's payments app go compared with the plan?",
                "It was planned for the end of March and went live two days late with good reviews",
                ["launch", "launched"],
            ),
            (
                1,
                "What pets do Anna and Ben have?",
                "Anna has Biscuit, a beagle mix puppy; Ben and Mia have Pixel, a grey rescue cat",
                ["dog_name", "pixel"],
            ),
            (
                3,
                "Does Anna enjoy spending time outdoors?",
                "Likely yes; she runs along the river and races marathons",
                ["run_distance", "marathon_signup"],
            ),
            (
                3,
                "Would Ben feel relaxed performing for a big audience?",
                "Probably not; his hands shook at a small open mic night",
                ["openmic"],
            ),
            (5, "What did Ben name his puppy?", None, ["dog_name"]),
        ],
    },
    {
        "id": "carlos-dana",
        "lang": "en",
        "a": "Carlos",
        "b": "Dana",
        "dates": [
            "9:12 am on 14 January, 2023",
            "4:45 pm on 25 February, 2023",
            "8:20 pm on 9 April, 2023",
            "11:30 am on 28 May, 2023",
        ],
        "sessions": [
            [
                [
                    (
                        "A",
                        "Dana! I finally signed the lease for the bakery on Elm Street.",
                        "lease",
                    ),
                    ("B", "Carlos, that's huge! When do you open?"),
                    ("A", "If the ovens arrive on time, the middle of February.", "open_plan"),
                ],
                [
                    (
                        "B",
                        "I've been spending every evening at the pottery studio. My first set of bowls survived the kiln without cracking.",
                        "bowls",
                    ),
                    ("A", "Will you make some for the shop?"),
                    ("B", "Only if you pay me in croissants."),
                ],
                [
                    (
                        "B",
                        "My mom is having knee surgery next Tuesday, so I'll be driving to Sacramento a lot.",
                        "surgery_plan",
                    ),
                    ("A", "I hope it goes smoothly. Tell her I said hi."),
                ],
                [
                    (
                        "A",
                        "My grandmother's sourdough starter is 40 years old, and it will be the base of every loaf.",
                        "starter",
                    ),
                    ("B", "So the place has family history baked in."),
                ],
                [
                    ("B", "Our book club picked Pachinko for February.", "pachinko"),
                    ("A", "I heard it's long. Enjoy!"),
                ],
            ],
            [
                [
                    (
                        "A",
                        "We opened last Saturday! We sold out of cinnamon rolls by ten in the morning.",
                        "opened",
                    ),
                    ("B", "I knew it! What else sold well?"),
                    ("A", "The olive loaf, and people keep asking for rye."),
                ],
                [
                    (
                        "B",
                        "Mom's operation went well, she's already walking with a cane.",
                        "surgery_ok",
                    ),
                    ("A", "That's a relief."),
                    ("B", "She's stubborn, she wants to be back in her garden by spring."),
                ],
                [
                    (
                        "B",
                        "I'm saving up for a trip to Japan in May to visit pottery towns like Mashiko.",
                        "japan_plan",
                    ),
                    ("A", "You should bring back a teacup for me."),
                ],
                [
                    (
                        "A",
                        "I hired two people: a baker named Priya, and my cousin Luis for the counter.",
                        "hires",
                    ),
                    ("B", "Family and a pro, good mix."),
                ],
                [
                    (
                        "B",
                        "Book club was intense, half the group cried at the ending.",
                        "pachinko_done",
                    ),
                ],
            ],
            [
                [
                    (
                        "A",
                        "A food critic from the Chronicle came in on Wednesday and wrote that our croissants are the best in the city.",
                        "critic",
                    ),
                    ("B", "Frame that review!"),
                    ("A", "It's already on the wall next to the register."),
                ],
                [
                    ("B", "I sold six bowls at the spring craft fair yesterday.", "craft_fair"),
                    ("A", "Look at you, a professional potter."),
                ],
                [
                    (
                        "A",
                        "Luis burned a whole tray of baguettes last week, but he's learning.",
                        "luis_burn",
                    ),
                    ("B", "Everyone burns something at the start."),
                ],
                [
                    (
                        "B",
                        "I've been learning a few Japanese phrases every night with an app.",
                        "japanese",
                    ),
                    ("A", "Say something!"),
                    ("B", "Arigatou gozaimasu, that's all I've got so far."),
                ],
                [
                    (
                        "A",
                        "I'm exhausted though. My alarm goes off at 3:30 every morning.",
                        "wakeup",
                    ),
                    ("B", "That's brutal. Nap in the afternoon?"),
                ],
            ],
            [
                [
                    (
                        "B",
                        "I'm back! Mashiko was even better than I imagined, I took a two-day workshop with a local potter.",
                        "japan_back",
                    ),
                    ("A", "Did you bring my teacup?"),
                    ("B", "A celadon one, I'll drop it off tomorrow.", "teacup"),
                ],
                [
                    (
                        "A",
                        "We're expanding. I'm opening a second location near the university in the fall.",
                        "second",
                    ),
                    ("B", "Already? That's fast."),
                ],
                [
                    (
                        "A",
                        "Priya is going to run the new shop, she knows the ovens better than I do now.",
                        "priya_runs",
                    ),
                    ("B", "She sounds like a great manager."),
                ],
                [
                    (
                        "B",
                        "My mom came to the craft fair with me on the weekend and bought a bowl from another potter.",
                        "mom_fair",
                    ),
                    ("A", "Ha, supporting the competition."),
                ],
                [
                    (
                        "A",
                        "We started a Sunday bread class for kids. Eight signed up the first week.",
                        "kids_class",
                    ),
                ],
            ],
        ],
        "qa": [
            (4, "On which street is Carlos's bakery?", "Elm Street", ["lease"]),
            (4, "How old is the sourdough starter Carlos uses?", "40 years old", ["starter"]),
            (4, "What novel did Dana's book club read?", "Pachinko", ["pachinko"]),
            (
                4,
                "Who did Carlos hire?",
                "Priya as a baker and his cousin Luis for the counter",
                ["hires"],
            ),
            (
                4,
                "What did the newspaper critic praise?",
                "The croissants, best in the city",
                ["critic"],
            ),
            (
                4,
                "What kind of teacup did Dana bring back for Carlos?",
                "A celadon teacup",
                ["teacup"],
            ),
            (2, "When did Carlos's bakery open?", "Saturday 18 February 2023", ["opened"]),
            (
                2,
                "When was Dana's mother's knee surgery?",
                "Tuesday 17 January 2023",
                ["surgery_plan"],
            ),
            (2, "When did Dana sell bowls at a craft fair?", "8 April 2023", ["craft_fair"]),
            (2, "When did Luis burn the baguettes?", "The week before 9 April 2023", ["luis_burn"]),
            (
                1,
                "How did Dana's mother recover after her surgery?",
                "It went well; she walked with a cane and later went to the craft fair and bought a bowl",
                ["surgery_ok", "mom_fair"],
            ),
            (
                1,
                "What did Dana do to prepare for and enjoy her pottery trip to Japan?",
                "She saved up, learned Japanese phrases with an app and took a two-day workshop in Mashiko",
                ["japan_plan", "japanese", "japan_back"],
            ),
            (
                1,
                "What roles has Priya had at the bakery?",
                "She was hired as a baker and will run the second location",
                ["hires", "priya_runs"],
            ),
            (
                1,
                "How has Carlos's business grown since it opened?",
                "It sold out on opening day, got a rave review, started a kids' bread class and is opening a second location",
                ["opened", "critic", "second", "kids_class"],
            ),
            (
                3,
                "Is Carlos a morning person?",
                "He has to be; his alarm rings at 3:30 every morning",
                ["wakeup"],
            ),
            (
                3,
                "Does Carlos value family traditions?",
                "Yes; he bakes with his grandmother's starter and hired his cousin",
                ["starter", "hires"],
            ),
            (5, "What did Carlos sell at the craft fair?", None, ["craft_fair"]),
        ],
    },
    {
        "id": "emma-farid",
        "lang": "en",
        "a": "Emma",
        "b": "Farid",
        "dates": [
            "5:00 pm on 2 June, 2023",
            "1:30 pm on 19 July, 2023",
            "9:45 pm on 30 August, 2023",
            "3:10 pm on 12 November, 2023",
        ],
        "sessions": [
            [
                [
                    (
                        "A",
                        "Just finished my fourth night shift in a row at the children's hospital. I'm a zombie.",
                        "night",
                    ),
                    ("B", "Get some sleep, Emma! Nurses are heroes."),
                ],
                [
                    (
                        "B",
                        "I've been volunteering at the food bank on Saturdays, sorting donations.",
                        "foodbank",
                    ),
                    ("A", "That's lovely. How did you get into that?"),
                    ("B", "My neighbour runs it and they were short on people after the winter."),
                ],
                [
                    (
                        "A",
                        "My old car finally died on the highway on Monday. I need a replacement.",
                        "car_died",
                    ),
                    ("B", "Oh no, were you okay?"),
                    ("A", "Just shaken. A tow truck took it to the scrapyard."),
                ],
                [
                    (
                        "B",
                        "My daughter Layla turns seven next week and she wants a dinosaur party.",
                        "layla_bday",
                    ),
                    ("A", "Dinosaurs! Do you need help with the decorations?"),
                ],
                [
                    (
                        "B",
                        "I'm trying to cook my mother's chicken biryani, but mine never tastes like hers.",
                        "biryani",
                    ),
                    ("A", "Recipes never taste the same as mom's."),
                ],
            ],
            [
                [
                    (
                        "A",
                        "I bought a used Toyota Corolla, silver, only 40,000 miles on it.",
                        "corolla",
                    ),
                    ("B", "Smart choice, those last forever."),
                ],
                [
                    (
                        "B",
                        "Layla's party was chaos, twelve kids screaming about T-rexes. She loved it.",
                        "party",
                    ),
                    ("A", "Who made the cake?"),
                    (
                        "B",
                        "My wife Sara baked a volcano cake that actually smoked with dry ice.",
                        "sara_cake",
                    ),
                ],
                [
                    (
                        "A",
                        "I'm starting a part-time master's program in public health in September.",
                        "masters",
                    ),
                    ("B", "While working night shifts? You're brave."),
                ],
                [
                    (
                        "B",
                        "We're going camping at Lake Tahoe in August with my brother's family.",
                        "tahoe_plan",
                    ),
                    ("A", "Bring lots of bug spray."),
                ],
                [
                    (
                        "A",
                        "I've taken up climbing at an indoor gym to stay sane between shifts.",
                        "climbing",
                    ),
                    ("B", "Climbing is great for the head."),
                ],
            ],
            [
                [
                    (
                        "B",
                        "Tahoe was amazing, but a bear got into our cooler on the second night.",
                        "bear",
                    ),
                    ("A", "A bear! Was everyone safe?"),
                    ("B", "Yes, it just ate all the hot dogs and wandered off."),
                ],
                [
                    (
                        "A",
                        "Classes start next week. I bought a huge statistics textbook.",
                        "stats_book",
                    ),
                    ("B", "Statistics, rather you than me."),
                ],
                [
                    (
                        "B",
                        "I finally nailed the biryani! The trick was frying the onions much longer.",
                        "biryani_fixed",
                    ),
                    ("A", "You have to cook it for me."),
                ],
                [
                    ("A", "I climbed my first 6a route at the gym on Sunday.", "climb_6a"),
                    ("B", "No idea what that means but it sounds hard!"),
                ],
                [
                    (
                        "B",
                        "The food bank asked me to coordinate the Saturday volunteers now.",
                        "coordinator",
                    ),
                    ("A", "A promotion, even if unpaid."),
                ],
            ],
            [
                [
                    (
                        "A",
                        "I switched to day shifts so I can attend lectures in the evening.",
                        "day_shift",
                    ),
                    ("B", "That must feel like a new life."),
                ],
                [
                    (
                        "B",
                        "We're preparing for the Thanksgiving drive, we expect about 300 families this year.",
                        "thanksgiving",
                    ),
                    ("A", "That's a lot of turkeys."),
                ],
                [
                    (
                        "A",
                        "My Corolla got a flat tyre yesterday right outside the hospital.",
                        "flat",
                    ),
                    ("B", "At least you were close to help."),
                ],
                [
                    (
                        "B",
                        "Layla started piano lessons and practices every day before school.",
                        "layla_piano",
                    ),
                    ("A", "Every day? More discipline than me."),
                ],
                [
                    ("A", "I got an A on my first statistics exam!", "stats_exam"),
                    ("B", "Told you you'd be fine."),
                ],
            ],
        ],
        "qa": [
            (4, "Where does Emma work?", "At a children's hospital, as a nurse", ["night"]),
            (4, "What car did Emma buy?", "A used silver Toyota Corolla", ["corolla"]),
            (4, "What is the name of Farid's daughter?", "Layla", ["layla_bday"]),
            (
                4,
                "What did Sara bake for the birthday party?",
                "A volcano cake that smoked with dry ice",
                ["sara_cake"],
            ),
            (4, "What is Emma studying part-time?", "A master's in public health", ["masters"]),
            (
                4,
                "What was the secret to Farid's biryani?",
                "Frying the onions much longer",
                ["biryani_fixed"],
            ),
            (2, "When did Emma's old car break down?", "Monday 29 May 2023", ["car_died"]),
            (
                2,
                "When did a bear raid Farid's camp?",
                "In August 2023, on the second night at Lake Tahoe",
                ["bear", "tahoe_plan"],
            ),
            (2, "When did Emma climb her first 6a route?", "Sunday 27 August 2023", ["climb_6a"]),
            (2, "When did Emma get a flat tyre?", "11 November 2023", ["flat"]),
            (
                1,
                "What happened with Emma's cars this year?",
                "Her old car died on the highway, she bought a used Corolla, and it later got a flat tyre",
                ["car_died", "corolla", "flat"],
            ),
            (
                1,
                "How did Farid's role at the food bank change?",
                "From sorting donations on Saturdays to coordinating the volunteers and the Thanksgiving drive",
                ["foodbank", "coordinator", "thanksgiving"],
            ),
            (
                1,
                "How did Emma fit her studies around her job?",
                "She started a part-time master's and switched to day shifts to attend evening lectures",
                ["masters", "day_shift"],
            ),
            (
                1,
                "What hobbies does Layla have?",
                "Dinosaurs and piano",
                ["layla_bday", "layla_piano"],
            ),
            (
                3,
                "Would Emma probably enjoy climbing outdoors?",
                "Likely yes; she climbs at an indoor gym and climbed a 6a route",
                ["climbing", "climb_6a"],
            ),
            (
                3,
                "Is Farid close to his family?",
                "Yes; he cooks his mother's recipe and goes camping with his brother's family",
                ["biryani", "tahoe_plan"],
            ),
            (5, "What did Emma name her daughter?", None, ["layla_bday"]),
        ],
    },
    {
        "id": "lina-wangwei",
        "lang": "zh",
        "a": "李娜",
        "b": "王伟",
        "dates": [
            "8:00 pm on 5 March, 2023",
            "7:30 pm on 16 April, 2023",
            "10:15 am on 3 June, 2023",
            "9:00 pm on 20 August, 2023",
        ],
        "sessions": [
            [
                [
                    ("A", "王伟，我上个月搬到成都了，终于离开北京了！", "move_cd"),
                    ("B", "太好了！成都的生活节奏慢，你会喜欢的。"),
                    ("A", "是啊，而且这边的房租比北京便宜一半。"),
                ],
                [
                    ("B", "我的火锅店这个月刚开业，在春熙路附近。", "hotpot_open"),
                    ("A", "恭喜！我一定去吃。"),
                    ("B", "来了给你打八折。"),
                ],
                [
                    ("A", "我在学游泳，每周二和周四晚上去体育馆上课。", "swim"),
                    ("B", "你以前不是怕水吗？"),
                    ("A", "对，所以才想克服它。", "afraid_water"),
                ],
                [
                    ("A", "我还领养了一只橘猫，叫团子。", "cat"),
                    ("B", "名字好可爱！"),
                ],
            ],
            [
                [
                    ("B", "店里生意很好，周末要排队一个小时。", "queue"),
                    ("A", "那你要多招几个服务员了。"),
                    ("B", "已经招了五个，还是忙不过来。", "staff5"),
                ],
                [
                    ("A", "我终于能游二十五米了，虽然姿势很难看。", "swim25"),
                    ("B", "进步很快啊！"),
                ],
                [
                    ("B", "我报名了注册会计师考试，每天晚上关店后复习到一点。", "cpa"),
                    ("A", "你太拼了，注意身体。"),
                ],
                [
                    ("A", "团子昨天把我的花瓶打碎了。", "vase"),
                    ("B", "猫就是这样哈哈。"),
                ],
                [
                    (
                        "A",
                        "I also started an English podcast about daily life in Chengdu, we have 200 listeners now.",
                        "podcast",
                    ),
                    ("B", "厉害，用英语做节目！"),
                ],
            ],
            [
                [
                    ("B", "考试上周考完了，感觉财务会计那科没考好。", "exam_done"),
                    ("A", "别担心，等成绩出来再说。"),
                ],
                [
                    ("A", "我五一假期去了九寨沟，湖水颜色真的像画一样。", "jiuzhai"),
                    ("B", "我一直想去！人多吗？"),
                    ("A", "人山人海，但是值得。"),
                ],
                [
                    ("B", "我们店推出了一个新的番茄锅底，很受小朋友欢迎。", "tomato"),
                    ("A", "不吃辣的人终于有救了。"),
                ],
                [
                    ("A", "教练说我下个月可以学蛙泳了。", "breaststroke"),
                    ("B", "加油！"),
                ],
                [
                    ("B", "我妈妈从重庆过来帮我管店了。", "mom_help"),
                    ("A", "有妈妈在你能轻松一点。"),
                ],
            ],
            [
                [
                    ("B", "成绩出来了，四门过了三门，只有财务会计没过。", "exam_result"),
                    ("A", "已经很厉害了！明年再考就行。"),
                ],
                [
                    ("A", "我上周末第一次在露天泳池游了一千米。", "swim1k"),
                    ("B", "从怕水到一千米，太了不起了。"),
                ],
                [
                    ("B", "我打算在高新区开第二家分店。", "branch2"),
                    ("A", "生意越做越大了！"),
                ],
                [
                    ("A", "团子生病了，在宠物医院住了三天，现在好了。", "cat_sick"),
                    ("B", "还好没事，多陪陪它。"),
                ],
                [
                    ("A", "Our podcast was invited to a radio interview last Friday!", "radio"),
                    ("B", "太棒了，电台采访！"),
                ],
            ],
        ],
        "qa": [
            (4, "王伟的火锅店开在哪里？", "春熙路附近", ["hotpot_open"]),
            (4, "李娜的猫叫什么名字？", "团子", ["cat"]),
            (4, "王伟的店里有几个服务员？", "五个", ["staff5"]),
            (4, "李娜五一假期去了哪里旅游？", "九寨沟", ["jiuzhai"]),
            (4, "王伟的店推出了什么新的锅底？", "番茄锅底", ["tomato"]),
            (4, "What is Li Na's podcast about?", "Daily life in Chengdu", ["podcast"]),
            (2, "李娜什么时候搬到成都的？", "2023年2月", ["move_cd"]),
            (2, "团子什么时候打碎了花瓶？", "2023年4月15日", ["vase"]),
            (
                2,
                "王伟什么时候参加的注册会计师考试？",
                "2023年5月下旬（6月3日的前一周）",
                ["exam_done"],
            ),
            (2, "李娜第一次游一千米是什么时候？", "2023年8月20日之前的那个周末", ["swim1k"]),
            (
                1,
                "李娜的游泳水平是怎么一步步提高的？",
                "从上课开始，到能游二十五米，再学蛙泳，最后游了一千米",
                ["swim", "swim25", "breaststroke", "swim1k"],
            ),
            (
                1,
                "王伟的注册会计师考试结果如何，哪一科有问题？",
                "四门过了三门，财务会计没过",
                ["exam_done", "exam_result"],
            ),
            (
                1,
                "王伟的火锅生意是怎么发展的？",
                "春熙路开业，周末排队一小时，计划在高新区开分店",
                ["hotpot_open", "queue", "branch2"],
            ),
            (1, "团子给李娜添过哪些麻烦？", "打碎花瓶，生病住院三天", ["vase", "cat_sick"]),
            (
                3,
                "李娜是一个喜欢挑战自己的人吗？",
                "是的，她以前怕水却去学游泳",
                ["afraid_water", "swim"],
            ),
            (3, "王伟的家人支持他的事业吗？", "支持，他妈妈从重庆过来帮他管店", ["mom_help"]),
            (5, "王伟的猫叫什么名字？", None, ["cat"]),
        ],
    },
]

# Small talk that pads the sessions: it shares everyday words (dog, run, cake, car, shop,
# work) with the questions, as real chat does, so retrieval has distractors to beat.
FILLERS = {
    "en": [
        ("How's the weather over there?", "Rainy all week, I haven't seen the sun since Monday."),
        (
            "Have you watched anything good lately?",
            "I binged a detective series over the weekend, totally addictive.",
        ),
        ("I really need a vacation.", "Same here, somewhere with a beach and no email."),
        (
            "Did you try that new coffee place downtown?",
            "Yes, the coffee was fine but the line was ridiculous.",
        ),
        ("My phone screen cracked again.", "You need a better case!"),
        (
            "I've been reading before bed instead of scrolling.",
            "Good habit, I should try that too.",
        ),
        ("Work has been a lot this week.", "Hang in there, the weekend is close."),
        ("I cooked pasta three nights in a row.", "Nothing wrong with that, pasta is life."),
        ("Any plans for the weekend?", "Probably cleaning and a long walk."),
        ("I finally fixed the leaking tap in the kitchen.", "Look at you, a plumber now."),
        ("My neighbour's dog barks all night.", "That sounds exhausting, have you talked to them?"),
        ("I've started drinking more water and I feel better already.", "Small changes add up!"),
        ("Did you see the game last night?", "Missed it, but I heard it was close."),
        ("The traffic this morning was terrible.", "Take the train, it's faster!"),
        ("I bought too many plants again.", "There's no such thing as too many plants."),
        ("I ran into an old school friend at the supermarket.", "Small world! Did you catch up?"),
        ("My back hurts from sitting all day.", "Get up and stretch every hour, it helps."),
        (
            "I tried baking bread at home and it came out flat.",
            "Homemade bread is harder than it looks.",
        ),
        ("The car wash near my place closed down.", "Everything is closing lately."),
        (
            "I'm thinking about learning a new language.",
            "Spanish would be fun, lots of shows to practise with.",
        ),
        ("Our internet was down all evening.", "The worst, I'd go crazy."),
        (
            "I went to a concert last month and my ears are still ringing.",
            "Worth it though, right?",
        ),
        ("Have you been sleeping okay?", "Not really, too much coffee I think."),
        ("I found a great podcast about history.", "Send me the link!"),
        ("My parents are visiting soon.", "Time to clean the whole apartment then."),
        ("I signed up for a cooking newsletter.", "Let me know if any recipes are good."),
    ],
    "zh": [
        ("最近天气怎么样？", "一直下雨，好几天没见太阳了。"),
        ("你最近在看什么剧？", "周末追了一部悬疑剧，停不下来。"),
        ("好想放个假啊。", "我也是，想去海边躺几天。"),
        ("今天地铁好挤。", "早高峰都这样，习惯就好。"),
        ("我手机屏幕又摔碎了。", "该买个好点的手机壳了。"),
        ("最近工作好累。", "坚持一下，马上周末了。"),
        ("周末有什么安排？", "打扫卫生，然后出去散散步。"),
        ("楼下新开了一家奶茶店。", "好喝吗？排队的人多不多？"),
        ("我最近睡得不太好。", "少喝点咖啡试试。"),
        ("我爸妈下个月来看我。", "那得好好打扫一下房间了。"),
        ("昨天在超市碰到了高中同学。", "世界真小！聊了吗？"),
        ("我买了太多绿植了。", "绿植永远不嫌多。"),
        ("最近在学做饭。", "做了什么好吃的？"),
        ("小区里有只狗每天晚上叫。", "那也太吵了吧。"),
        ("家里网断了一个晚上。", "没网真的会疯掉。"),
        ("你看昨晚的球赛了吗？", "没看，听说很精彩。"),
    ],
}
OPENERS = {
    "en": [
        ("Hey {b}! How have you been?", "Hi {a}! Busy but good. You?"),
        ("{b}, good to hear from you!", "Likewise, {a}. So much has happened."),
    ],
    "zh": [
        ("{b}，最近怎么样？", "还不错，{a}，你呢？"),
        ("好久不见，{b}！", "是啊{a}，最近发生了好多事。"),
    ],
}
CLOSERS = {
    "en": [
        ("I have to run, talk soon!", "Bye, take care!"),
        ("Let's catch up again soon.", "Definitely, have a good night."),
    ],
    "zh": [("我先去忙了，回头聊！", "好的，拜拜！"), ("改天再聊吧。", "好，早点休息。")],
}


def build(
    seed: int = 5,
    conversations: list[dict] = CONVERSATIONS,
    filler_pool: dict[str, list[tuple[str, str]]] = FILLERS,
) -> list[dict]:
    """LoCoMo-format samples of ``conversations``, padded with small talk from ``filler_pool``."""
    rng = random.Random(seed)
    samples = []
    for conv in conversations:
        lang = conv["lang"]
        names = {"A": conv["a"], "B": conv["b"]}
        fillers = list(filler_pool[lang])
        rng.shuffle(fillers)
        conversation: dict = {"speaker_a": conv["a"], "speaker_b": conv["b"]}
        tags: dict[str, str] = {}
        for s_index, blocks in enumerate(conv["sessions"], start=1):
            blocks = [list(block) for block in blocks]
            for _ in range(rng.randint(3, 5)):  # small talk between the events
                first, second = fillers.pop() if fillers else rng.choice(filler_pool[lang])
                who = rng.choice("AB")
                other = "B" if who == "A" else "A"
                blocks.insert(rng.randint(0, len(blocks)), [(who, first), (other, second)])
            fmt = {"a": conv["a"], "b": conv["b"]}
            opener = rng.choice(OPENERS[lang])
            closer = rng.choice(CLOSERS[lang])
            blocks.insert(0, [("A", opener[0].format(**fmt)), ("B", opener[1].format(**fmt))])
            blocks.append([("B", closer[0].format(**fmt)), ("A", closer[1].format(**fmt))])
            turns = []
            for block in blocks:
                for turn in block:
                    dia_id = f"D{s_index}:{len(turns) + 1}"
                    turns.append({"speaker": names[turn[0]], "dia_id": dia_id, "text": turn[1]})
                    if len(turn) > 2:
                        tags[turn[2]] = dia_id
            conversation[f"session_{s_index}_date_time"] = conv["dates"][s_index - 1]
            conversation[f"session_{s_index}"] = turns
        qa = []
        for category, question, answer, evidence in conv["qa"]:
            item: dict = {"question": question, "evidence": [tags[t] for t in evidence]}
            if answer is None:
                # LoCoMo's adversarial questions carry the tempting wrong answer instead.
                owner_answer = next(a for c, q, a, e in conv["qa"] if e == evidence and a)
                item["adversarial_answer"] = owner_answer
            else:
                item["answer"] = answer
            item["category"] = category
            qa.append(item)
        samples.append({"sample_id": conv["id"], "conversation": conversation, "qa": qa})
    return samples


def main(argv: list[str] | None = None) -> None:
    import argparse

    argparse.ArgumentParser(
        prog="python -m bench.quality.make_synthetic",
        description="Write bench/quality/synthetic_locomo.json: four hand-written, dated "
        "conversations with questions, in the LoCoMo format (the same file every time).",
        epilog="Example:\n  .venv/bin/python -m bench.quality.make_synthetic",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    samples = build()
    OUT.write_text(json.dumps(samples, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    turns = sum(len(v) for s in samples for k, v in s["conversation"].items() if k[-1].isdigit())
    questions = sum(len(s["qa"]) for s in samples)
    print(f"wrote {OUT}: {len(samples)} conversations, {turns} turns, {questions} questions")


if __name__ == "__main__":
    main()
