"""Seed 003's client code, in the order the tutorial shows it."""

from tasks import add, buy_bread, buy_milk, fetch_user_name, greeting_user, heavy_task

from celeriac import chain, group

result = add.delay(4, 5)
print(result.get(timeout=30))  # 9

task1 = buy_milk.s(7)
task2 = buy_bread.s(5)
task_group = group(task1, task2)
result = task_group.apply_async()
results = result.get(timeout=30)
print(results)  # [7, 5]

task1 = fetch_user_name.s(1)
task2 = greeting_user.s()
task_chain = chain(task1 | task2)
result = task_chain.apply_async()
final_result = result.get(timeout=30)
print(final_result)  # Здравствуй, Пётр 1Первый!


def get_factorial(arg):
    result = heavy_task.apply_async(args=(arg,))
    while not result.ready():
        # the task is still running
        pass
    if result.successful():
        result_value = result.get()
    else:
        # what went wrong
        result_value = result.result
    print(result_value)


get_factorial(50)  # 608281864034267560872252163321295376887552831379210240000000000
get_factorial("Сейчас будет ошибка")  # 'str' object cannot be interpreted as an integer
